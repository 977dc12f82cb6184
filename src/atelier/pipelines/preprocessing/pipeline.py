"""``manifest`` + ``lineage`` + source -> ``primary_images`` (uint8 N x C x H x W and the split)."""

from kedro.pipeline import Node, Pipeline

from atelier.pipelines.preprocessing.nodes import preprocess_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=preprocess_images,
                inputs=["manifest", "lineage", "params:preprocessing"],
                outputs="primary_images",
                name="preprocess_images",
            ),
        ]
    )
