"""The project's Kedro hooks, all here, in the order ``settings.py`` registers them.

- :class:`ExperimentHook` (:mod:`.experiment`): the run's MLflow experiment exists before
  kedro-mlflow's hook looks for it (two runs starting at once on a new server both get it);
- :class:`RunLockHook` (:mod:`.runlock`): one ``kedro run`` per project folder at a time;
- :class:`PreflightHook` (:mod:`.preflight`): every parameter namespace the run reads, and
  the Inception weights, checked before the first node;
- :class:`LineageHook` (:mod:`.lineage`): code, data and configuration lineage on the
  MLflow run kedro-mlflow's own hook opens (the one hook that writes to MLflow; what it
  records comes from the tracking adapter, ``atelier.tracking``).
"""

from atelier.hooks.experiment import ExperimentHook
from atelier.hooks.lineage import LineageHook
from atelier.hooks.preflight import PreflightHook
from atelier.hooks.runlock import LOCK_FILE, ProjectLock, RunLockHook

__all__ = ["ExperimentHook", "LOCK_FILE", "LineageHook", "PreflightHook", "ProjectLock", "RunLockHook"]
