"""Registration: log the EMA generator as a pyfunc model, register it, promote it if better."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
