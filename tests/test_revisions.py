"""Schema revisions read without Alembic (master.db.revisions) agree with Alembic, or defer to it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from master.db import migrate, revisions
from master.db.interfaces import StorageError

ROOT = Path(__file__).resolve().parent.parent


def _revision(folder: Path, name: str, down: str | tuple[str, ...] | None) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(f'''\
        """Revision {name}."""
        revision = {name!r}
        down_revision = {down!r}
        branch_labels = None


        def upgrade() -> None:
            pass
    '''))


def _alembic_head(folder: Path) -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", migrate.MIGRATIONS)
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(folder))
    return ScriptDirectory.from_config(config).get_current_head()


def test_core_head_matches_alembic() -> None:
    from alembic.script import ScriptDirectory

    assert migrate.head_revision() == ScriptDirectory(migrate.MIGRATIONS).get_current_head()
    assert revisions.head(Path(migrate.MIGRATIONS) / "versions") == migrate.head_revision()


def test_chain_and_merge(tmp_path: Path) -> None:
    _revision(tmp_path, "a1", None)
    _revision(tmp_path, "b2", "a1")
    _revision(tmp_path, "c3", "a1")
    assert revisions.head(tmp_path) is revisions.UNKNOWN  # two heads: only Alembic can say (it raises)
    _revision(tmp_path, "d4", ("b2", "c3"))
    assert revisions.head(tmp_path) == "d4" == _alembic_head(tmp_path)


def test_unreadable_revision_defers_to_alembic(tmp_path: Path) -> None:
    _revision(tmp_path, "a1", None)
    (tmp_path / "b2.py").write_text('revision = "b" + "2"\ndown_revision = "a1"\n')
    assert revisions.head(tmp_path) is revisions.UNKNOWN
    assert migrate.PluginSchema("x", sa.MetaData(), tmp_path).head() == "b2"


def test_empty_folder(tmp_path: Path) -> None:
    assert revisions.head(tmp_path) is None


def test_stamp_and_check(db_url: str) -> None:
    assert migrate.current_revision(db_url) is None
    with pytest.raises(StorageError, match="no ci-master schema"):
        migrate.check(db_url)
    migrate.create(db_url)
    assert migrate.current_revision(db_url) == migrate.head_revision()
    migrate.check(db_url)
    engine = sa.create_engine(migrate.sqlalchemy_url(db_url), poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    with pytest.raises(StorageError, match="is at schema 0001"):
        migrate.check(db_url)
    with engine.begin() as connection:  # two rows: Alembic's own reader decides (and refuses)
        connection.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES ('0002')"))
        assert revisions.stamped(connection) is revisions.UNKNOWN
    engine.dispose()


@pytest.mark.slow  # runs a Python process
def test_check_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.sqlite"
    migrate.create(url)
    code = (f"import sys; from master.db import migrate; migrate.check({url!r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == "[]"
