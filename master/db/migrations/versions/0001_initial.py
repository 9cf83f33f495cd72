"""The first schema: masters, builders, workers, changes, buildsets, requests, builds, steps, logs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('buildsets',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('external_idstring', sa.String(length=255), nullable=True),
    sa.Column('reason', sa.String(length=255), nullable=True),
    sa.Column('submitted_at', sa.Integer(), nullable=False),
    sa.Column('complete', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('complete_at', sa.Integer(), nullable=True),
    sa.Column('results', sa.SmallInteger(), nullable=True),
    sa.Column('parent_buildid', sa.Integer(), nullable=True),
    sa.Column('parent_relationship', sa.Text(), nullable=True),
    sa.Column('rebuilt_buildid', sa.Integer(), nullable=True),
    sa.Column('scheduler', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_buildsets'))
    )
    op.create_index(op.f('ix_buildsets_complete'), 'buildsets', ['complete'], unique=False)
    op.create_index(op.f('ix_buildsets_submitted_at'), 'buildsets', ['submitted_at'], unique=False)
    op.create_table('forceschedulers',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('label', sa.Text(), nullable=False),
    sa.Column('button_name', sa.Text(), nullable=False),
    sa.Column('builder_names', sa.Text(), server_default='[]', nullable=False),
    sa.Column('all_fields', sa.Text(), server_default='[]', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_forceschedulers')),
    sa.UniqueConstraint('name', name=op.f('uq_forceschedulers_name'))
    )
    op.create_table('masters',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('last_active', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_masters')),
    sa.UniqueConstraint('name', name=op.f('uq_masters_name'))
    )
    op.create_table('projects',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('slug', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('description_format', sa.String(length=32), nullable=True),
    sa.Column('description_html', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
    sa.UniqueConstraint('name', name=op.f('uq_projects_name'))
    )
    op.create_table('sourcestamps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ss_hash', sa.String(length=40), nullable=False),
    sa.Column('branch', sa.String(length=255), nullable=True),
    sa.Column('revision', sa.String(length=255), nullable=True),
    sa.Column('repository', sa.String(length=512), server_default='', nullable=False),
    sa.Column('codebase', sa.String(length=255), server_default='', nullable=False),
    sa.Column('project', sa.String(length=512), server_default='', nullable=False),
    sa.Column('created_at', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sourcestamps')),
    sa.UniqueConstraint('ss_hash', name=op.f('uq_sourcestamps_ss_hash'))
    )
    op.create_table('workers',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('info', sa.Text(), server_default='{}', nullable=False),
    sa.Column('paused', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('pause_reason', sa.Text(), nullable=True),
    sa.Column('graceful', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workers')),
    sa.UniqueConstraint('name', name=op.f('uq_workers_name'))
    )
    op.create_table('builders',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('description_format', sa.String(length=32), nullable=True),
    sa.Column('description_html', sa.Text(), nullable=True),
    sa.Column('projectid', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['projectid'], ['projects.id'], name=op.f('fk_builders_projectid_projects'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_builders')),
    sa.UniqueConstraint('name', name=op.f('uq_builders_name'))
    )
    op.create_index(op.f('ix_builders_projectid'), 'builders', ['projectid'], unique=False)
    op.create_table('buildset_properties',
    sa.Column('buildsetid', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['buildsetid'], ['buildsets.id'], name=op.f('fk_buildset_properties_buildsetid_buildsets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('buildsetid', 'name', name=op.f('pk_buildset_properties'))
    )
    op.create_table('buildset_sourcestamps',
    sa.Column('buildsetid', sa.Integer(), nullable=False),
    sa.Column('sourcestampid', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['buildsetid'], ['buildsets.id'], name=op.f('fk_buildset_sourcestamps_buildsetid_buildsets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sourcestampid'], ['sourcestamps.id'], name=op.f('fk_buildset_sourcestamps_sourcestampid_sourcestamps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('buildsetid', 'sourcestampid', name=op.f('pk_buildset_sourcestamps'))
    )
    op.create_index(op.f('ix_buildset_sourcestamps_sourcestampid'), 'buildset_sourcestamps', ['sourcestampid'], unique=False)
    op.create_table('changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('author', sa.String(length=255), nullable=False),
    sa.Column('committer', sa.String(length=255), nullable=True),
    sa.Column('comments', sa.Text(), server_default='', nullable=False),
    sa.Column('branch', sa.String(length=255), nullable=True),
    sa.Column('revision', sa.String(length=255), nullable=True),
    sa.Column('revlink', sa.String(length=512), nullable=True),
    sa.Column('when_timestamp', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=255), nullable=True),
    sa.Column('repository', sa.String(length=512), server_default='', nullable=False),
    sa.Column('codebase', sa.String(length=255), server_default='', nullable=False),
    sa.Column('project', sa.String(length=512), server_default='', nullable=False),
    sa.Column('sourcestampid', sa.Integer(), nullable=False),
    sa.Column('parent_changeid', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['parent_changeid'], ['changes.id'], name=op.f('fk_changes_parent_changeid_changes'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sourcestampid'], ['sourcestamps.id'], name=op.f('fk_changes_sourcestampid_sourcestamps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_changes'))
    )
    op.create_index(op.f('ix_changes_branch'), 'changes', ['branch'], unique=False)
    op.create_index(op.f('ix_changes_project'), 'changes', ['project'], unique=False)
    op.create_index(op.f('ix_changes_sourcestampid'), 'changes', ['sourcestampid'], unique=False)
    op.create_table('connected_workers',
    sa.Column('masterid', sa.Integer(), nullable=False),
    sa.Column('workerid', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['masterid'], ['masters.id'], name=op.f('fk_connected_workers_masterid_masters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workerid'], ['workers.id'], name=op.f('fk_connected_workers_workerid_workers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('masterid', 'workerid', name=op.f('pk_connected_workers'))
    )
    op.create_index(op.f('ix_connected_workers_workerid'), 'connected_workers', ['workerid'], unique=False)
    op.create_table('schedulers',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('masterid', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['masterid'], ['masters.id'], name=op.f('fk_schedulers_masterid_masters'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedulers')),
    sa.UniqueConstraint('name', name=op.f('uq_schedulers_name'))
    )
    op.create_table('builder_masters',
    sa.Column('builderid', sa.Integer(), nullable=False),
    sa.Column('masterid', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['builderid'], ['builders.id'], name=op.f('fk_builder_masters_builderid_builders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['masterid'], ['masters.id'], name=op.f('fk_builder_masters_masterid_masters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('builderid', 'masterid', name=op.f('pk_builder_masters'))
    )
    op.create_index(op.f('ix_builder_masters_masterid'), 'builder_masters', ['masterid'], unique=False)
    op.create_table('builder_tags',
    sa.Column('builderid', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['builderid'], ['builders.id'], name=op.f('fk_builder_tags_builderid_builders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('builderid', 'tag', name=op.f('pk_builder_tags'))
    )
    op.create_index(op.f('ix_builder_tags_tag'), 'builder_tags', ['tag'], unique=False)
    op.create_table('buildrequests',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('buildsetid', sa.Integer(), nullable=False),
    sa.Column('builderid', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), server_default='0', nullable=False),
    sa.Column('complete', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('results', sa.SmallInteger(), nullable=True),
    sa.Column('submitted_at', sa.Integer(), nullable=False),
    sa.Column('complete_at', sa.Integer(), nullable=True),
    sa.Column('waited_for', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('claimed_by_masterid', sa.Integer(), nullable=True),
    sa.Column('claimed_at', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['builderid'], ['builders.id'], name=op.f('fk_buildrequests_builderid_builders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['buildsetid'], ['buildsets.id'], name=op.f('fk_buildrequests_buildsetid_buildsets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['claimed_by_masterid'], ['masters.id'], name=op.f('fk_buildrequests_claimed_by_masterid_masters'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_buildrequests'))
    )
    op.create_index(op.f('ix_buildrequests_builderid_submitted_at'), 'buildrequests', ['builderid', 'submitted_at'], unique=False)
    op.create_index(op.f('ix_buildrequests_buildsetid'), 'buildrequests', ['buildsetid'], unique=False)
    op.create_index(op.f('ix_buildrequests_complete_builderid_priority_submitted_at'), 'buildrequests', ['complete', 'builderid', 'priority', 'submitted_at'], unique=False)
    op.create_table('change_files',
    sa.Column('changeid', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=1024), nullable=False),
    sa.ForeignKeyConstraint(['changeid'], ['changes.id'], name=op.f('fk_change_files_changeid_changes'), ondelete='CASCADE')
    )
    op.create_index(op.f('ix_change_files_changeid'), 'change_files', ['changeid'], unique=False)
    op.create_table('change_properties',
    sa.Column('changeid', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=255), server_default='Change', nullable=False),
    sa.ForeignKeyConstraint(['changeid'], ['changes.id'], name=op.f('fk_change_properties_changeid_changes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('changeid', 'name', name=op.f('pk_change_properties'))
    )
    op.create_table('configured_workers',
    sa.Column('builderid', sa.Integer(), nullable=False),
    sa.Column('masterid', sa.Integer(), nullable=False),
    sa.Column('workerid', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['builderid'], ['builders.id'], name=op.f('fk_configured_workers_builderid_builders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['masterid'], ['masters.id'], name=op.f('fk_configured_workers_masterid_masters'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workerid'], ['workers.id'], name=op.f('fk_configured_workers_workerid_workers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('builderid', 'masterid', 'workerid', name=op.f('pk_configured_workers'))
    )
    op.create_index(op.f('ix_configured_workers_workerid'), 'configured_workers', ['workerid'], unique=False)
    op.create_table('builds',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('builderid', sa.Integer(), nullable=False),
    sa.Column('buildrequestid', sa.Integer(), nullable=False),
    sa.Column('workerid', sa.Integer(), nullable=True),
    sa.Column('masterid', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.Integer(), nullable=False),
    sa.Column('complete_at', sa.Integer(), nullable=True),
    sa.Column('locks_duration_s', sa.Integer(), server_default='0', nullable=False),
    sa.Column('state_string', sa.Text(), server_default='', nullable=False),
    sa.Column('results', sa.SmallInteger(), nullable=True),
    sa.ForeignKeyConstraint(['builderid'], ['builders.id'], name=op.f('fk_builds_builderid_builders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['buildrequestid'], ['buildrequests.id'], name=op.f('fk_builds_buildrequestid_buildrequests'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['masterid'], ['masters.id'], name=op.f('fk_builds_masterid_masters'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['workerid'], ['workers.id'], name=op.f('fk_builds_workerid_workers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_builds')),
    sa.UniqueConstraint('builderid', 'number', name=op.f('uq_builds_builderid_number'))
    )
    op.create_index(op.f('ix_builds_builderid_results'), 'builds', ['builderid', 'results'], unique=False)
    op.create_index(op.f('ix_builds_buildrequestid'), 'builds', ['buildrequestid'], unique=False)
    op.create_index(op.f('ix_builds_complete_at'), 'builds', ['complete_at'], unique=False)
    op.create_index(op.f('ix_builds_started_at'), 'builds', ['started_at'], unique=False)
    op.create_index(op.f('ix_builds_workerid'), 'builds', ['workerid'], unique=False)
    op.create_table('build_properties',
    sa.Column('buildid', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['buildid'], ['builds.id'], name=op.f('fk_build_properties_buildid_builds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('buildid', 'name', name=op.f('pk_build_properties'))
    )
    op.create_table('steps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('buildid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.Integer(), nullable=True),
    sa.Column('locks_acquired_at', sa.Integer(), nullable=True),
    sa.Column('complete_at', sa.Integer(), nullable=True),
    sa.Column('state_string', sa.Text(), server_default='', nullable=False),
    sa.Column('results', sa.SmallInteger(), nullable=True),
    sa.Column('urls', sa.Text(), server_default='[]', nullable=False),
    sa.Column('hidden', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.ForeignKeyConstraint(['buildid'], ['builds.id'], name=op.f('fk_steps_buildid_builds'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_steps')),
    sa.UniqueConstraint('buildid', 'name', name=op.f('uq_steps_buildid_name')),
    sa.UniqueConstraint('buildid', 'number', name=op.f('uq_steps_buildid_number'))
    )
    op.create_table('logs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('slug', sa.String(length=255), nullable=False),
    sa.Column('stepid', sa.Integer(), nullable=False),
    sa.Column('complete', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('num_lines', sa.Integer(), server_default='0', nullable=False),
    sa.Column('type', sa.String(length=1), server_default='s', nullable=False),
    sa.ForeignKeyConstraint(['stepid'], ['steps.id'], name=op.f('fk_logs_stepid_steps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_logs')),
    sa.UniqueConstraint('stepid', 'slug', name=op.f('uq_logs_stepid_slug'))
    )
    op.create_table('logchunks',
    sa.Column('logid', sa.Integer(), nullable=False),
    sa.Column('first_line', sa.Integer(), nullable=False),
    sa.Column('last_line', sa.Integer(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('compressed', sa.SmallInteger(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['logid'], ['logs.id'], name=op.f('fk_logchunks_logid_logs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('logid', 'first_line', name=op.f('pk_logchunks'))
    )
    op.create_index(op.f('ix_logchunks_logid_last_line'), 'logchunks', ['logid', 'last_line'], unique=False)
    # buildsets and builds refer to each other: add these two once both exist
    with op.batch_alter_table("buildsets") as batch:
        batch.create_foreign_key(
            op.f("fk_buildsets_parent_buildid_builds"), "builds", ["parent_buildid"], ["id"], ondelete="SET NULL"
        )
        batch.create_foreign_key(
            op.f("fk_buildsets_rebuilt_buildid_builds"), "builds", ["rebuilt_buildid"], ["id"], ondelete="SET NULL"
        )
