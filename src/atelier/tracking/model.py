"""The MLflow pyfunc model that serves a trained generator: seeds in, images out.

Input: a table (pandas DataFrame, or the JSON ``dataframe_split``/``dataframe_records``
forms that ``mlflow models serve`` accepts) with columns

- ``seed`` (int, required): one image per row; the same seed always gives the same image;
- ``truncation`` (float, optional): truncation-trick threshold for that row's latent vector
  (components with ``|z| > truncation`` are redrawn); missing, null or <= 0 disables it.

Output: a ``numpy.uint8`` array of shape ``(rows, height, width, channels)`` (HWC, the
layout PIL and most image tools expect; ``channels`` is 1 for grayscale or 3 for RGB).
Over HTTP it arrives as ``{"predictions": [...]}``, nested lists in that shape.

The model's one artifact is the generator file written by the training pipeline (a
:class:`atelier.core.models.GeneratorCheckpoint`), read with ``torch.load(weights_only=True)``
by :func:`atelier.core.models.load_generator`.
The device defaults to the CPU; pass ``model_config={"device": "cuda"}`` to
``mlflow.pyfunc.load_model`` to generate on a GPU.
"""

from __future__ import annotations

import math

import mlflow.pyfunc
import numpy as np
import pandas as pd

from atelier.core.generate import generate_images
from atelier.core.models import load_generator

GENERATOR_ARTIFACT = "generator"


def _truncation_values(model_input: pd.DataFrame) -> list[float | None] | None:
    if "truncation" not in model_input.columns:
        return None
    values = []
    for value in model_input["truncation"].tolist():
        values.append(None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value))
    return values


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around an Atelier generator (see the module docstring for I/O)."""

    def load_context(self, context) -> None:
        device = (context.model_config or {}).get("device", "cpu")
        self.generator = load_generator(context.artifacts[GENERATOR_ARTIFACT], device)
        self.device = device

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        if "seed" not in model_input.columns:
            raise ValueError(
                "The input needs a 'seed' column (int), e.g. "
                '{"dataframe_split": {"columns": ["seed"], "data": [[1], [2]]}}.'
            )
        seeds = [int(seed) for seed in model_input["seed"].tolist()]
        images = generate_images(
            self.generator, seeds, truncation=_truncation_values(model_input), device=self.device
        )
        return images.permute(0, 2, 3, 1).cpu().numpy()
