"""Where a run's code and data came from: git commit, DVC data version, content hashes.

- :class:`SourceVersionDataset` (catalog entry ``source_version``) reads the git commit
  and the DVC hashes of the checkout when a pipeline loads it; the ``record_lineage`` node
  combines them with the manifest into the run's ``lineage`` (one dict, computed once,
  passed to registration as data and tagged on the run by :mod:`atelier.hooks.lineage`).
- :func:`folder_files` serves ``atelier.reproduce`` (which also compares weights with
  :func:`atelier.core.storage.state_dict_sha256`, as the run's ``generator_sha256`` tag does).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from atelier.core.storage import file_sha256

# The lineage dict's keys that become run (and model version) tags.
LINEAGE_TAGS = ("git_commit", "git_dirty", "data_version", "data_hash", "data_source")


def lineage_tags(lineage: dict) -> dict[str, str]:
    """The run (and model version) tags of a ``lineage`` dict."""
    return {key: str(lineage[key]).lower() if isinstance(lineage[key], bool) else str(lineage[key])
            for key in LINEAGE_TAGS if lineage.get(key) is not None}


@dataclass(frozen=True)
class GitState:
    """The commit a run's code came from, and whether tracked files had local changes."""

    commit: str
    dirty: bool


def _git(project_path: str | Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project_path, capture_output=True, text=True,
                          check=True).stdout.strip()


def git_state(project_path: str | Path) -> GitState | None:
    """Return the checkout's HEAD commit and dirtiness, or ``None`` outside a git checkout.

    Untracked files do not count as dirty (``data/`` and outputs are ignored anyway); any
    change to a tracked file does, since the run's code would then differ from the commit.
    """
    try:
        commit = _git(project_path, "rev-parse", "HEAD")
        changes = _git(project_path, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return GitState(commit=commit, dirty=bool(changes))


def _dvc_file_md5(dvc_file: Path, out_name: str) -> str | None:
    try:
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
    except (OSError, yaml.YAMLError):
        return None
    for out in outs:
        if Path(out.get("path", "")).name == out_name and out.get("md5"):
            return out["md5"]
    return None


def dvc_data_version(project_path: str | Path, source: str | Path) -> str | None:
    """The DVC hash recorded for ``source`` in ``<source>.dvc``, or ``None`` if not tracked.

    This is what ``dvc checkout`` restores; it says which data version the workspace was
    last checked out or added at, not whether the files were edited since (the manifest's
    ``data_hash`` says what the run actually read).
    """
    source = Path(source)
    if not source.is_absolute():
        source = Path(project_path) / source
    dvc_file = source.with_name(source.name + ".dvc")
    return _dvc_file_md5(dvc_file, source.name) if dvc_file.is_file() else None


def dvc_versions(project_path: str | Path) -> dict[str, str]:
    """``{tracked path relative to the project: DVC md5}`` for every ``.dvc`` file git sees."""
    project_path = Path(project_path)
    try:
        listed = _git(project_path, "ls-files", "--cached", "--others", "--exclude-standard",
                      "--", "*.dvc").splitlines()
    except (OSError, subprocess.CalledProcessError):
        listed = [str(path.relative_to(project_path)) for path in project_path.glob("data/**/*.dvc")]
    versions = {}
    for name in listed:
        tracked = Path(name).with_suffix("")
        md5 = _dvc_file_md5(project_path / name, tracked.name)
        if md5:
            versions[tracked.as_posix()] = md5
    return versions


def folder_files(folder: str | Path) -> dict[str, str]:
    """``{relative POSIX path: sha256}`` for every file under ``folder`` (recursively)."""
    folder = Path(folder)
    return {
        file.relative_to(folder).as_posix(): file_sha256(file)
        for file in sorted(folder.rglob("*"))
        if file.is_file()
    }
