"""Digits -> ``sample_images`` (data/01_raw/images/<label>/<index>.png)."""

from kedro.pipeline import Node, Pipeline

from atelier.pipelines.sample_data.nodes import render_sample_digits


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=render_sample_digits,
                inputs="params:sample_data",
                outputs="sample_images",
                name="render_sample_digits",
            ),
        ]
    )
