"""Scores the trained generator against the validation split: FID, IS, KID and sample grids."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
