"""``sample_data``: write scikit-learn's bundled handwritten digits as PNG files."""

from atelier.pipelines.sample_data.pipeline import create_pipeline

__all__ = ["create_pipeline"]
