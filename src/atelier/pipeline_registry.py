"""Project pipelines.

``train`` chains every pipeline except ``sample_data``, in data-flow order; it is also
the default pipeline (``kedro run``).
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

TRAIN_PIPELINES = ("data_ingestion", "preprocessing", "training", "evaluation", "registration")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["train"] = sum(
        (pipelines[name] for name in TRAIN_PIPELINES if name in pipelines), Pipeline([])
    )
    pipelines["__default__"] = pipelines["train"]
    return pipelines
