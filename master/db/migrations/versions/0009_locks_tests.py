"""Lock claims (MasterLock, WorkerLock) and test results (test_result_sets, test_results).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lock_claims",
        sa.Column("lock", sa.String(length=255), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("masterid", sa.Integer(), nullable=False),
        sa.Column("buildid", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["buildid"], ["builds.id"], name=op.f("fk_lock_claims_buildid_builds"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["masterid"], ["masters.id"], name=op.f("fk_lock_claims_masterid_masters"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("lock", "slot", name=op.f("pk_lock_claims")),
    )
    for column in ("owner", "masterid", "buildid"):
        op.create_index(op.f(f"ix_lock_claims_{column}"), "lock_claims", [column], unique=False)
    op.create_table(
        "test_result_sets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("builderid", sa.Integer(), nullable=False),
        sa.Column("buildid", sa.Integer(), nullable=False),
        sa.Column("stepid", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("value_unit", sa.Text(), nullable=False),
        sa.Column("tests_passed", sa.Integer(), nullable=True),
        sa.Column("tests_failed", sa.Integer(), nullable=True),
        sa.Column("complete", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(["builderid"], ["builders.id"], name=op.f("fk_test_result_sets_builderid_builders"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["buildid"], ["builds.id"], name=op.f("fk_test_result_sets_buildid_builds"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["stepid"], ["steps.id"], name=op.f("fk_test_result_sets_stepid_steps"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_result_sets")),
    )
    for column in ("buildid", "stepid", "builderid"):
        op.create_index(op.f(f"ix_test_result_sets_{column}"), "test_result_sets", [column], unique=False)
    op.create_table(
        "test_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("builderid", sa.Integer(), nullable=False),
        sa.Column("test_result_setid", sa.Integer(), nullable=False),
        sa.Column("test_name", sa.Text(), nullable=True),
        sa.Column("test_code_path", sa.Text(), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("duration_ns", sa.BigInteger(), nullable=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["builderid"], ["builders.id"], name=op.f("fk_test_results_builderid_builders"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["test_result_setid"], ["test_result_sets.id"],
                                name=op.f("fk_test_results_test_result_setid_test_result_sets"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_results")),
    )
    op.create_index(op.f("ix_test_results_test_result_setid"), "test_results", ["test_result_setid"], unique=False)


def downgrade() -> None:
    op.drop_table("test_results")
    op.drop_table("test_result_sets")
    op.drop_table("lock_claims")
