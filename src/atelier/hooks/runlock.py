"""One ``kedro run`` at a time per project folder.

Every pipeline reads and writes fixed paths under ``data/`` (the manifest, the primary
tensor, checkpoints, the generator, metrics.json, ...). Two runs started side by side in
the same folder would read each other's files: one run's MLflow record would carry the
other run's scores. :class:`RunLockHook` therefore takes an exclusive lock on
``<project>/.atelier-run.lock`` before the first node (and before kedro-mlflow opens an
MLflow run) and refuses a second run with a message naming the first one: its pid, host,
start time, pipeline and command line.

Why a lock and not Kedro's dataset versioning: versioning every per-run output would
still leave the shared parts shared on purpose (the checkpoint folders a later run
resumes from, the Inception feature cache, the DVC-tracked images), and two trainings in
one folder would fight over the same CPU cores or GPU anyway. Runs that should proceed in
parallel belong in separate clones (separate CI jobs, separate machines) that share an
MLflow server, where the registry's own lock makes racing registrations safe
(:mod:`atelier.tracking.promotion`).

The lock is an OS file lock (``fcntl.flock``; ``msvcrt.locking`` on Windows), so the
operating system releases it when the holding process ends, however it ends: a crashed or
killed run never leaves a stale lock behind. The file's text only describes the holder.
If a run hangs, stop it (``kill <pid>``); deleting the file does not unlock a live run.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from kedro.framework.hooks import hook_impl

from atelier.errors import ProjectBusyError

LOCK_FILE = ".atelier-run.lock"


def _try_lock(handle: IO[str]) -> bool:
    try:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {when}, "
            f"pipeline {holder.get('pipeline', '?')}: {holder.get('command', '?')}")


class ProjectLock:
    """An exclusive, process-bound lock on a project folder (see the module docstring)."""

    def __init__(self, project_path: Path) -> None:
        self.path = Path(project_path) / LOCK_FILE
        self._handle: IO[str] | None = None

    def acquire(self, pipeline: str) -> None:
        """Take the lock for this process, or raise :class:`ProjectBusyError` naming the
        run that holds it."""
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        if not _try_lock(handle):
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            handle.close()
            raise ProjectBusyError(
                f"Another kedro run is using this project folder ({self.path.parent}): "
                f"{_describe(holder)}. Runs in one folder share data/ and would overwrite "
                f"each other's files, so this one stops before doing anything. Wait for it "
                f"to finish, or run in a separate clone of the project. The lock goes away "
                f"by itself when that process ends (even if it crashes); if it hangs, stop "
                f"it with `kill {holder.get('pid', '<pid>')}`."
            )
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.time(), "pipeline": pipeline,
                                 "command": " ".join(sys.argv)}))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Give the lock back (closing the file releases the OS lock)."""
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.close()
            self._handle = None


class RunLockHook:
    """Hold :class:`ProjectLock` from before the first node until the run ends."""

    def __init__(self) -> None:
        self._project_path: Path | None = None
        self._lock: ProjectLock | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._project_path = Path(context.project_path)

    # tryfirst: refuse before kedro-mlflow's hook opens an MLflow run for this run.
    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        if self._project_path is None:
            return
        names = run_params.get("pipeline_names") or [run_params.get("pipeline_name") or "__default__"]
        lock = ProjectLock(self._project_path)
        lock.acquire("+".join(str(name) for name in names))
        self._lock = lock

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        self._release()

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline,
                          catalog) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
