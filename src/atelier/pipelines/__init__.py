"""Kedro pipelines: thin wiring around ``atelier.core``."""
