"""Registration: log the EMA generator as a pyfunc model (and, with ``registration.onnx``, as
an ONNX file), register it, promote it if better."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
