"""``generator`` + the registry's champion + ``primary_images`` -> ``metrics`` (both scored
side by side), ``generated_grid``, ``real_grid``,
``evaluation_scores`` (the metrics as MLflow run metrics)."""

from kedro.pipeline import Node, Pipeline

from .nodes import draw_sample_grids, evaluate_generator, fetch_champion, scores_for_tracking


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=fetch_champion,
                inputs=["model_registry", "params:registration"],
                outputs="champion",
                name="fetch_champion",
            ),
            Node(
                func=evaluate_generator,
                inputs=["generator", "champion", "primary_images", "params:evaluation"],
                outputs="metrics",
                name="evaluate_generator",
            ),
            Node(
                func=draw_sample_grids,
                inputs=["generator", "primary_images", "params:evaluation"],
                outputs=["generated_grid", "real_grid"],
                name="draw_sample_grids",
            ),
            Node(
                func=scores_for_tracking,
                inputs="metrics",
                outputs="evaluation_scores",
                name="scores_for_tracking",
            ),
        ]
    )
