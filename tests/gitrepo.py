"""Real git repositories for tests: a bare "remote" in a temporary directory and a clone to commit in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# commits are made by the tests with a fixed identity, whatever the machine's git configuration
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada Tester", "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada Tester", "GIT_COMMITTER_EMAIL": "ada@example.org",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}
# git refuses file:// submodules unless told (CVE-2022-39253): a Git step's env= can pass this
ALLOW_FILE_PROTOCOL = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.file.allow",
                       "GIT_CONFIG_VALUE_0": "always"}


def git(*args: str, cwd: Path) -> str:
    """Run git in *cwd*; its standard output, stripped.  A failure raises with git's error."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **GIT_ENV, **ALLOW_FILE_PROTOCOL})
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


class Repo:
    """A bare repository at ``<root>/<name>.git`` (the remote, cloned by ``file://`` URL) and a clone to commit in."""

    def __init__(self, root: Path, name: str = "project") -> None:
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-dev"
        self.bare.mkdir(parents=True)
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        git("init", "--quiet", "--initial-branch=main", str(self.work), cwd=root)
        git("remote", "add", "origin", self.url, cwd=self.work)

    @property
    def url(self) -> str:
        """The remote's ``file://`` URL."""
        return self.bare.resolve().as_uri()

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        """Write *files* (path: text) in the clone and commit them; return the new commit's full sha."""
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, ref: str = "refs/heads/main", what: str = "HEAD") -> None:
        """Push *what* (a commit of the clone) to *ref* of the bare remote."""
        git("push", "--quiet", "--force", "origin", f"{what}:{ref}", cwd=self.work)
