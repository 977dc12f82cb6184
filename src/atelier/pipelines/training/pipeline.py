"""``primary_images`` (and for a fine-tune ``parent_model``, fetched from ``model_registry``)
-> ``generator``, ``training_state``, ``training_sample_grid``, ``loss_history``,
``loss_curve``."""

from kedro.pipeline import Node, Pipeline

from atelier.pipelines.training.nodes import fetch_parent_model, plot_loss_curve, train_generator


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=fetch_parent_model,
                inputs=["params:training", "model_registry"],
                outputs="parent_model",
                name="fetch_parent_model",
            ),
            Node(
                func=train_generator,
                inputs=["primary_images", "parent_model", "params:training", "params:evaluation",
                        "training_reporter"],
                outputs=["generator", "training_state", "training_sample_grid", "loss_history"],
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
