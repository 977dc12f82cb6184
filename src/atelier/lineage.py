"""Where a run's code and data came from: git commit, DVC data version, content hashes.

Used by the tracking hook (tags on every MLflow run) and by ``atelier.reproduce``.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class GitState:
    """The commit a run's code came from, and whether tracked files had local changes."""

    commit: str
    dirty: bool


def git_state(project_path: str | Path) -> GitState | None:
    """Return the checkout's HEAD commit and dirtiness, or ``None`` outside a git checkout.

    Untracked files do not count as dirty (``data/`` and outputs are ignored anyway); any
    change to a tracked file does, since the run's code would then differ from the commit.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=project_path, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changes = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return GitState(commit=commit, dirty=bool(changes))


def dvc_data_version(project_path: str | Path, source: str | Path) -> str | None:
    """The DVC hash recorded for ``source`` in ``<source>.dvc``, or ``None`` if not tracked.

    This is what ``dvc checkout`` restores; it says which data version the workspace was
    last checked out or added at, not whether the files were edited since (the manifest's
    content hash, :func:`manifest_content_hash`, says what the run actually read).
    """
    source = Path(source)
    if not source.is_absolute():
        source = Path(project_path) / source
    dvc_file = source.with_name(source.name + ".dvc")
    if not dvc_file.is_file():
        return None
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
    for out in outs:
        if Path(out.get("path", "")).name == source.name and out.get("md5"):
            return out["md5"]
    return None


def manifest_content_hash(paths: list[str], sha256s: list[str], statuses: list[str]) -> str:
    """A sha256 over the manifest's (path, sha256, status) rows, in path order.

    Two sources hash alike exactly when they hold the same files with the same bytes and
    ingestion treated them alike; it changes when any image is added, removed or edited.
    """
    digest = hashlib.sha256()
    for path, sha, status in sorted(zip(paths, sha256s, statuses, strict=True)):
        digest.update(f"{path}\0{sha}\0{status}\n".encode())
    return digest.hexdigest()
