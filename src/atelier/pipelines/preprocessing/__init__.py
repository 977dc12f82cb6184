"""``preprocessing``: decode the manifest's usable images into one training tensor."""

from atelier.pipelines.preprocessing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
