"""The MLflow pyfunc model that serves a trained generator: seeds in, images out.

Input: a table (pandas DataFrame, or the JSON ``dataframe_split``/``dataframe_records``
forms that ``mlflow models serve`` accepts) with columns

- ``seed`` (int, required): one image per row; the same seed always gives the same image;
- ``truncation`` (float, optional): truncation-trick threshold for that row's latent vector
  (components with ``|z| > truncation`` are redrawn); missing, null or <= 0 disables it;
- ``label`` (string, optional; class-conditional generators only): the class of that row's
  image, by name: one of the checkpoint's ``class_names`` (the top-level folders the
  training images came from, e.g. ``"7"`` for the digits), or ``"0"``, ``"1"``, ... for a
  generator trained without names. Names, not indices: a value is matched by its text, and
  an unknown one is refused with the list of known classes. A missing column or a null
  value gives class ``seed % num_classes`` (the classes cycle over consecutive seeds, as in
  the pipeline's sample grids and evaluation). A label for an unconditional generator is
  refused (the signature declares ``label`` for every model, so that one reaches it).

Output, chosen by the inference parameter ``format`` (``params={"format": ...}`` in
``predict``, ``"params": {"format": ...}`` in the JSON body of ``mlflow models serve``):

- ``array`` (the default): a ``numpy.uint8`` array of shape ``(rows, height, width,
  channels)`` (HWC, the layout PIL and most image tools expect; ``channels`` is 1 for
  grayscale or 3 for RGB). Over HTTP it arrives as ``{"predictions": [...]}``, nested lists
  in that shape.
- ``png``: one base64-encoded PNG file per row, as a list of strings (over HTTP
  ``{"predictions": ["iVBORw0KGgo...", ...]}``); the same pixels as ``array``, losslessly.

Any other format is refused with the list of known ones. The signature's output schema
describes the default, ``array``. A refused request (:class:`InvalidModelInput`) is, over
HTTP, a 400 whose ``message`` says why.

The model carries its own code (only this module and the ``core`` modules it imports) and
requirements: see :mod:`atelier.tracking.model_code`. Loading it puts that code first on
``sys.path``; in a process that also uses the rest of Atelier, import ``atelier`` before
loading the model, so that ``atelier`` stays the installed package.

The model's one artifact is the generator file written by the training pipeline (a
:class:`atelier.core.models.GeneratorCheckpoint`), read with ``torch.load(weights_only=True)``
by :func:`atelier.core.models.load_generator`.
The device defaults to the CPU; pass ``model_config={"device": "cuda"}`` to
``mlflow.pyfunc.load_model`` to generate on a GPU.
"""

from __future__ import annotations

import base64
import io
import math

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from PIL import Image

from atelier.core.generate import class_names_of, generate_images
from atelier.core.models import GeneratorCheckpoint, load_generator

GENERATOR_ARTIFACT = "generator"
#: The values of the inference parameter ``format``; the first is the default.
OUTPUT_FORMATS = ("array", "png")


class InvalidModelInput(MlflowException, ValueError):
    """A request the model refuses (no seed, an unknown label or format). A ``ValueError``;
    also an ``MlflowException``, so that ``mlflow models serve`` answers 400 with this
    message (other exceptions' messages reach the client only in the ``stack_trace``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def _truncation_values(model_input: pd.DataFrame) -> list[float | None] | None:
    if "truncation" not in model_input.columns:
        return None
    return [None if _is_missing(value) else float(value)
            for value in model_input["truncation"].tolist()]


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def class_labels(model_input: pd.DataFrame, seeds: list[int],
                 class_names: tuple[str, ...]) -> list[int] | None:
    """The class index of each row: its ``label`` looked up by name in ``class_names``, or
    ``seed % num_classes`` where there is none; None for an unconditional generator (which
    refuses labels)."""
    given = model_input["label"].tolist() if "label" in model_input.columns else [None] * len(seeds)
    if not class_names:
        if any(not _is_missing(value) for value in given):
            raise InvalidModelInput("This generator is unconditional: it takes no 'label'. "
                                    "Drop the 'label' column, or serve a model trained with "
                                    "training.conditional=true.")
        return None
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({str(value) for value in given if not _is_missing(value)} - set(index))
    if unknown:
        raise InvalidModelInput(f"Unknown label(s) {unknown}: this generator knows the classes "
                                f"{list(class_names)} (give the class name as a string).")
    return [int(seed) % len(class_names) if _is_missing(value) else index[str(value)]
            for seed, value in zip(seeds, given, strict=True)]


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around an Atelier generator (see the module docstring for I/O)."""

    def load_context(self, context) -> None:
        device = (context.model_config or {}).get("device", "cpu")
        checkpoint = GeneratorCheckpoint.load(context.artifacts[GENERATOR_ARTIFACT])
        self.generator = load_generator(checkpoint, device)
        self.class_names = class_names_of(checkpoint)
        self.device = device

    def predict(self, context, model_input: pd.DataFrame,
                params: dict | None = None) -> np.ndarray | list[str]:
        """One image per row of ``model_input``, in ``params["format"]`` (see the module
        docstring)."""
        output_format = (params or {}).get("format") or OUTPUT_FORMATS[0]
        if output_format not in OUTPUT_FORMATS:
            raise InvalidModelInput(f"Unknown format {output_format!r}: choose one of "
                                    f"{list(OUTPUT_FORMATS)}, e.g. "
                                    '"params": {"format": "png"} in the request.')
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        if "seed" not in model_input.columns:
            raise InvalidModelInput(
                "The input needs a 'seed' column (int), e.g. "
                '{"dataframe_split": {"columns": ["seed"], "data": [[1], [2]]}}.'
            )
        seeds = [int(seed) for seed in model_input["seed"].tolist()]
        images = generate_images(
            self.generator, seeds, truncation=_truncation_values(model_input), device=self.device,
            labels=class_labels(model_input, seeds, self.class_names),
        )
        images = images.permute(0, 2, 3, 1).cpu().numpy()
        return images if output_format == "array" else [png_base64(image) for image in images]


def png_base64(image: np.ndarray) -> str:
    """One uint8 ``height x width x channels`` image as a base64-encoded PNG file."""
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
