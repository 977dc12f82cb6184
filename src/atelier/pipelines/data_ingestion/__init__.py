"""``data_ingestion``: inspect every file of the image source into a manifest."""

from atelier.pipelines.data_ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
