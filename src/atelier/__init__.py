"""Atelier: train, evaluate and register image generators on a studio's own images."""

__version__ = "0.1.0"
