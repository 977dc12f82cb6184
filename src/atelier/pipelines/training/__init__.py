"""``training``: DCGAN on the preprocessed tensor -> EMA generator, sample grid, loss history."""

from atelier.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
