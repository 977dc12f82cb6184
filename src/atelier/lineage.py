"""Where a run's code and data came from: git commit, DVC data version, content hashes.

Used by the tracking hook (tags on every MLflow run) and by ``atelier.reproduce``.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from atelier.core.storage import file_sha256


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


def content_hash(paths: list[str], sha256s: list[str]) -> str:
    """A sha256 over (relative path, file sha256) pairs, in path order.

    Two image sources hash alike exactly when they hold the same files (paths and bytes):
    it changes when any file is added, removed, renamed or edited. The manifest has one row
    per input file, so its ``path``/``sha256`` columns give the same value as hashing the
    folder itself (:func:`folder_content_hash`).
    """
    digest = hashlib.sha256()
    for path, sha in sorted(zip(paths, sha256s, strict=True)):
        digest.update(f"{path}\0{sha}\n".encode())
    return digest.hexdigest()


def folder_files(folder: str | Path) -> dict[str, str]:
    """``{relative POSIX path: sha256}`` for every file under ``folder`` (recursively)."""
    folder = Path(folder)
    return {
        file.relative_to(folder).as_posix(): file_sha256(file)
        for file in sorted(folder.rglob("*"))
        if file.is_file()
    }


def folder_content_hash(folder: str | Path) -> str:
    """:func:`content_hash` of every file under ``folder``."""
    files = folder_files(folder)
    return content_hash(list(files), list(files.values()))


def state_dict_sha256(state_dict: dict) -> str:
    """sha256 over a state dict's names, dtypes, shapes and raw tensor bytes, in key order.

    Unlike hashing a ``torch.save`` file, this depends only on the weights themselves.
    """
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            digest.update(f"{name}={tensor!r}".encode())
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
