"""The neutral modules every layer imports (result codes, hashing) and the worker shipping without the master."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from master.results import (
    CANCELLED,
    EXCEPTION,
    FAILURE,
    RESULTS,
    RETRY,
    SKIPPED,
    SUCCESS,
    WARNINGS,
    result_name,
    worst_result,
)
from master.security import hash_password, is_password_hash, token_hash

ROOT = Path(__file__).resolve().parent.parent


def test_result_names_follow_the_codes() -> None:
    codes = (SUCCESS, WARNINGS, FAILURE, SKIPPED, EXCEPTION, RETRY, CANCELLED)
    assert [result_name(code) for code in codes] == list(RESULTS)
    assert result_name(None) == "running"
    assert result_name(None, unset="not run") == "not run"
    assert result_name(42) == "42"  # a code from a newer master is shown, not hidden


def test_worst_result_ranks_cancelled_worst_and_skipped_least() -> None:
    assert worst_result([SKIPPED]) == SUCCESS
    assert worst_result([CANCELLED, RETRY, EXCEPTION, FAILURE, WARNINGS]) == CANCELLED


def test_password_hashes_are_recognised_and_plaintext_is_not() -> None:
    assert is_password_hash(hash_password("pw"))
    for value in ("pw", "scrypt$0$8$1$c2FsdA$ZGlnZXN0", "scrypt$16384$8$x$c2FsdA$ZGlnZXN0", "bcrypt$1$2$3$a$b",
                  "scrypt$16384$8$1$c2FsdA"):
        assert not is_password_hash(value), value


def test_token_hashes_are_stable_and_distinct() -> None:
    assert token_hash("cim_a") == token_hash("cim_a") != token_hash("cim_b")


@pytest.mark.slow  # a fresh interpreter
def test_the_worker_imports_without_the_master() -> None:
    # every module of the worker, in a fresh interpreter where importing master fails
    modules = sorted(f"worker.{p.stem}" for p in (ROOT / "worker").glob("*.py") if p.stem != "__init__")
    script = (
        "import importlib, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'master' or name.startswith('master.'):\n"
        "            raise ImportError('the worker must not import ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('worker', 'ci_common')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "worker.client" in done.stdout and "ci_common.protocol" in done.stdout
