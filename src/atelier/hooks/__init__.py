"""The project's Kedro hooks, all here, in the order ``settings.py`` registers them.

- :class:`RunLockHook` (:mod:`.runlock`): one ``kedro run`` per project folder at a time;
- :class:`PreflightHook` (:mod:`.preflight`): every parameter namespace the run reads, and
  the Inception weights, checked before the first node;
- :class:`LineageHook` (:mod:`.lineage`): code, data and configuration lineage on the
  MLflow run kedro-mlflow's own hook opens (the one hook that writes to MLflow; what it
  records comes from the tracking adapter, ``atelier.tracking``).
"""

from atelier.hooks.lineage import LineageHook
from atelier.hooks.preflight import PreflightHook
from atelier.hooks.runlock import LOCK_FILE, ProjectLock, RunLockHook

__all__ = ["LOCK_FILE", "LineageHook", "PreflightHook", "ProjectLock", "RunLockHook"]
