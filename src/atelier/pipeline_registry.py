"""Project pipelines.

``train`` chains every pipeline except ``sample_data``, in data-flow order; it is also
the default pipeline (``kedro run``). The pipelines are listed explicitly rather than
found with ``find_pipelines``: Kedro's CLI limits discovery to the requested names, and
``train`` is no package of its own.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from atelier.pipelines import (
    data_ingestion,
    evaluation,
    preprocessing,
    registration,
    sample_data,
    training,
)

TRAIN_PIPELINES = {
    "data_ingestion": data_ingestion,
    "preprocessing": preprocessing,
    "training": training,
    "evaluation": evaluation,
    "registration": registration,
}


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = {name: module.create_pipeline() for name, module in TRAIN_PIPELINES.items()}
    pipelines["sample_data"] = sample_data.create_pipeline()
    pipelines["train"] = sum(
        (pipelines[name] for name in TRAIN_PIPELINES), Pipeline([])
    )
    pipelines["__default__"] = pipelines["train"]
    return pipelines
