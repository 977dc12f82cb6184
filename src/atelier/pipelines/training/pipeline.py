"""``primary_images`` -> ``generator``, ``training_sample_grid``, ``loss_history``, ``loss_curve``."""

from kedro.pipeline import Node, Pipeline

from atelier.pipelines.training.nodes import plot_loss_curve, train_generator


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=train_generator,
                inputs=["primary_images", "params:training", "params:evaluation", "training_reporter"],
                outputs=["generator", "training_sample_grid", "loss_history"],
                name="train_generator",
            ),
            Node(
                func=plot_loss_curve,
                inputs="loss_history",
                outputs="loss_curve",
                name="plot_loss_curve",
            ),
        ]
    )
