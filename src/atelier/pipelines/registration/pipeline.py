from kedro.pipeline import Node, Pipeline

from .nodes import register_generator, write_model_card


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=register_generator,
                inputs=["generator", "metrics", "lineage", "primary_images", "model_registry",
                        "params:evaluation", "params:registration"],
                outputs="registration_record",
                name="register_generator",
            ),
            Node(
                func=write_model_card,
                inputs=["registration_record", "metrics", "loss_history",
                        "params:preprocessing", "params:training"],
                outputs="model_card",
                name="write_model_card",
            ),
        ]
    )
