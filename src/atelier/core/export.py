"""ONNX export of a trained generator, checked against the PyTorch generator it came from.

An ONNX file runs where PyTorch does not: ONNX Runtime (CPU, CUDA, DirectML, CoreML),
Unity's inference engine (Sentis), Unreal's NNE, a C++ tool. :func:`export_onnx` writes:

- input ``latent``: float32 ``N x latent_dim`` (``N`` dynamic), the generator's N(0, 1)
  latent vectors. The truncation trick is *not* in the graph: it is done on the latent
  before the call (:func:`atelier.core.generate.latent_vectors` redraws every component
  with ``|z| > truncation`` from the seed's own stream);
- input ``label``, class-conditional generators only: int64 ``N``, class indices in
  ``[0, num_classes)`` (metadata ``class_names`` names them; ONNX Runtime refuses an index
  outside that range);
- output ``image``: float32 ``N x channels x resolution x resolution`` in [-1, 1]; the
  pixels are :data:`UINT8_MAPPING`, as :func:`atelier.core.generate.to_uint8` computes them;
- the named opset (:data:`DEFAULT_OPSET`), the graph of the generator in inference mode
  with every batch norm folded into the convolution before it (:func:`fold_batch_norm`),
  and the metadata of :func:`onnx_metadata` in the file's ``metadata_props``.

The file must pass ``onnx.checker`` and, in ONNX Runtime, give the PyTorch generator's
pixels for the same latents to within :data:`MAX_PIXEL_DIFFERENCE` level of 255 (a float
difference near a rounding boundary can move one pixel by one level), at batch 1 and a
larger batch; otherwise nothing is written (:class:`ExportMismatchError`).

Seeds: torch's CPU ``randn`` is not something a game engine reimplements, so
``seeds=[...]`` also writes the latents that ``generate`` draws for those seeds (and the
class each seed gets by default, ``seed % num_classes``) to a JSON sidecar,
:func:`seed_latents_path` (``generator.onnx`` -> ``generator.latents.json``). Its numbers
are the float32 values written exactly (a float32 widened to a double, printed so that it
reads back unchanged): a tool that feeds ``latents[i]`` gets the gallery's image of
``seeds[i]``.

The exporter is torch's TorchScript-based one (``dynamo=False``): it traces the module, so
another architecture only needs ``latent_dim``, ``num_classes``, ``channels``,
``resolution`` and ``architecture`` attributes and a ``forward(latent[, label])`` that traces
(see :func:`export_onnx` for why not the ``torch.export`` one).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import onnxruntime
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from atelier import __version__
from atelier.core.errors import (
    CheckpointUnreadableError,
    ExportError,
    ExportMismatchError,
    ExportTargetExistsError,
    GeneratorNotFoundError,
    GeneratorTooOldError,
)
from atelier.core.generate import class_names_of, cycled_labels, latent_vectors, to_uint8
from atelier.core.models import (
    GENERATOR_CONFIG_KEYS,
    GENERATOR_FORMAT,
    OPTIONAL_CONFIG_KEYS,
    GeneratorCheckpoint,
    load_generator,
)
from atelier.core.storage import state_dict_sha256, write_atomically

LATENT_INPUT, LABEL_INPUT, IMAGE_OUTPUT = "latent", "label", "image"
#: Opset 15: the newest that every Unity Sentis 1.x and 2.x release reads (7 to 15);
#: ONNX Runtime, Unreal's NNE (ONNX Runtime inside) and Sentis 2.2+ read newer ones too.
DEFAULT_OPSET = 15
#: The opsets torch's TorchScript exporter writes with constant folding.
SUPPORTED_OPSETS = range(11, 21)
#: From the graph's float output to the pixels of ``atelier.core.generate.to_uint8``.
UINT8_MAPPING = "uint8 = round((clip(image, -1, 1) + 1) * 127.5), rounding half to even"
#: The largest difference, in levels of 255, allowed between ONNX Runtime's and PyTorch's
#: pixels for the same latents.
MAX_PIXEL_DIFFERENCE = 1
#: Seeds whose latents check an export when no seeds are asked for.
PROBE_SEEDS = range(8)
LATENTS_FORMAT = "atelier-seed-latents/1"


@dataclasses.dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote and measured."""

    path: Path
    opset: int
    size_bytes: int
    seconds: float  # export, checks and writing
    max_float_difference: float  # ONNX Runtime vs PyTorch, in [-1, 1] units
    max_pixel_difference: int  # the same after the uint8 mapping, in levels of 255
    checked_latents: int
    metadata: dict[str, str]
    latents_path: Path | None = None


def seed_latents_path(path: str | Path) -> Path:
    """Where the seed latents of the export ``path`` go: ``X.onnx`` -> ``X.latents.json``."""
    return Path(path).with_suffix(".latents.json")


def refuse_existing(paths: Sequence[Path], force: bool) -> None:
    """Raise :class:`ExportTargetExistsError` for the first of ``paths`` that exists, unless
    ``force``."""
    for path in paths:
        if not force and (path.exists() or path.is_symlink()):
            raise ExportTargetExistsError(
                f"{path} exists already: the export does not overwrite it. Choose another "
                "output path, or pass --force (force=True) to replace it.")


def load_exportable(path: str | Path) -> GeneratorCheckpoint:
    """The generator file ``path`` as a checkpoint the export can use, or a clear error:
    :class:`GeneratorNotFoundError` (no such file), :class:`CheckpointUnreadableError`
    (not a file ``torch.load`` reads with ``weights_only``), :class:`GeneratorTooOldError`
    (fields or config keys missing, unknown config keys, a newer format)."""
    path = Path(path)
    if not path.is_file():
        raise GeneratorNotFoundError(
            f"No generator file at {path}{' (it is a folder)' if path.is_dir() else ''}. Give "
            "the generator file the training pipeline writes (data/06_models/generator.pt).")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors alike: not a readable file
        raise CheckpointUnreadableError(
            f"{path} is not a generator file PyTorch can read safely ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no details'}). Give the file the "
            "training pipeline writes (data/06_models/generator.pt).") from None
    return exportable_checkpoint(data, str(path))


def exportable_checkpoint(data: object, where: str) -> GeneratorCheckpoint:
    """``data`` (a generator file's dict) checked for what the export needs; see
    :func:`load_exportable`."""
    needed = ("config", "state_dict")
    if not isinstance(data, dict) or not set(needed) <= set(data):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        missing = [key for key in needed if not isinstance(data, dict) or key not in data]
        raise GeneratorTooOldError(
            f"{where} is too old to export: it has no {' and no '.join(map(repr, missing))} "
            f"(it holds {found}). Generator files carry their architecture ('config') beside "
            "their weights ('state_dict'). Retrain it with this Atelier (kedro run "
            "--pipeline=train), or, knowing its architecture, wrap the weights: "
            "atelier.core.models.GeneratorCheckpoint(config={...}, state_dict=weights).save(PATH).")
    if int(data.get("format", GENERATOR_FORMAT)) > GENERATOR_FORMAT:
        raise GeneratorTooOldError(
            f"{where} was written by a newer Atelier (generator format {data['format']}; this "
            f"one reads format {GENERATOR_FORMAT}): upgrade Atelier to export it.")
    config = data["config"]
    missing = sorted(GENERATOR_CONFIG_KEYS - set(config))
    unknown = sorted(set(config) - GENERATOR_CONFIG_KEYS - OPTIONAL_CONFIG_KEYS)
    if missing or unknown:
        problems = ([f"lacks the key(s) {missing}"] if missing else []) + (
            [f"has key(s) this Atelier does not know, {unknown}"] if unknown else [])
        raise GeneratorTooOldError(
            f"{where} cannot be exported: its config {' and '.join(problems)} (the export needs "
            f"exactly {sorted(GENERATOR_CONFIG_KEYS)}, plus 'num_classes' for a conditional "
            "generator). Another Atelier version wrote it: export it with that version, or "
            "retrain it with this one (kedro run --pipeline=train).")
    try:
        return GeneratorCheckpoint.from_dict(data)
    except ValueError as error:  # e.g. class names that do not match num_classes
        raise GeneratorTooOldError(f"{where} cannot be exported: {error}") from None


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """An inference-mode copy of ``module`` in which every batch norm that directly follows a
    convolution (plain or transposed) in an ``nn.Sequential`` is folded into that
    convolution's weight and bias (the batch norm becomes ``nn.Identity``). The copy computes
    the same function in eval mode, to float rounding; ``module`` is left untouched. A batch
    norm anywhere else stays, and exports as an inference-mode ``BatchNormalization``."""
    folded = copy.deepcopy(module).eval()
    for container in [part for part in folded.modules() if isinstance(part, nn.Sequential)]:
        for index in range(len(container) - 1):
            conv, norm = container[index], container[index + 1]
            if _foldable(conv, norm):
                container[index] = fuse_conv_bn_eval(conv, norm, transpose=conv.transposed)
                container[index + 1] = nn.Identity()
    return folded


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (isinstance(conv, nn.modules.conv._ConvNd)
            and isinstance(norm, nn.modules.batchnorm._BatchNorm)
            and norm.running_mean is not None and norm.num_features == conv.out_channels
            and (conv.groups == 1 or not conv.transposed)  # fusion scales transposed weights per column
            and not parametrize.is_parametrized(conv))


def onnx_metadata(checkpoint: GeneratorCheckpoint, generator: nn.Module,
                  opset: int) -> dict[str, str]:
    """The file's ``metadata_props``: what a tool needs to drive the graph and to tell which
    weights it holds (``generator_sha256`` is the run's ``generator_sha256`` tag)."""
    shape = f"N x {generator.channels} x {generator.resolution} x {generator.resolution}"
    labels = (f"; input '{LABEL_INPUT}': int64 N, class indices in [0, {generator.num_classes})"
              if generator.num_classes else "")
    return {
        "architecture": str(getattr(generator, "architecture", type(generator).__name__)),
        "resolution": str(generator.resolution),
        "channels": str(generator.channels),
        "latent_dim": str(generator.latent_dim),
        "num_classes": str(generator.num_classes),
        "class_names": json.dumps(list(class_names_of(checkpoint))),
        "generator_sha256": state_dict_sha256(checkpoint.state_dict),
        "training_step": str(checkpoint.step),
        "generator_variant": checkpoint.variant,
        "atelier_version": __version__,
        "opset": str(opset),
        "inputs": f"'{LATENT_INPUT}': float32 N x {generator.latent_dim}, N(0, 1) latents{labels}",
        "output": f"'{IMAGE_OUTPUT}': float32 {shape} in [-1, 1]; {UINT8_MAPPING}",
        "truncation": "not in the graph: done on the latent before the call (components with "
                      "|z| > truncation redrawn, as Atelier's seeded latents are)",
        "seed_latents": "Atelier's images for given seeds: the latents of "
                        "`atelier export onnx ... --seeds 0-63` (X.latents.json)",
    }


def _to_onnx(generator: nn.Module, opset: int) -> onnx.ModelProto:
    """Trace the batch-norm-folded ``generator`` into an ONNX model (dynamic batch)."""
    conditional = bool(generator.num_classes)
    example = (torch.zeros(2, generator.latent_dim),) + (
        (torch.zeros(2, dtype=torch.int64),) if conditional else ())
    inputs = [LATENT_INPUT, LABEL_INPUT] if conditional else [LATENT_INPUT]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter's deprecation notice, and the tracer's note that the
        # generator's label-range check becomes a constant: the check is an error message,
        # and ONNX Runtime refuses out-of-range labels itself.
        warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message="The feature will be removed.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            fold_batch_norm(generator), example, buffer, dynamo=False, opset_version=opset,
            input_names=inputs, output_names=[IMAGE_OUTPUT], do_constant_folding=True,
            dynamic_axes={name: {0: "N"} for name in [*inputs, IMAGE_OUTPUT]})
    return onnx.load_from_string(buffer.getvalue())


def _describe_graph(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    onnx.helper.set_model_props(model, metadata)
    model.doc_string = (f"Atelier {metadata['architecture']} generator: {metadata['inputs']} -> "
                        f"{metadata['output']}. Truncation is {metadata['truncation']}.")
    for value in (*model.graph.input, *model.graph.output):
        value.doc_string = (metadata["output"] if value.name == IMAGE_OUTPUT else
                            metadata["inputs"])


def check_against_pytorch(model: bytes, generator: nn.Module, latents: torch.Tensor,
                          labels: torch.Tensor | None) -> tuple[float, int]:
    """Run the ONNX ``model`` in ONNX Runtime (CPU) and ``generator`` in PyTorch on the same
    ``latents`` (and ``labels``), as one batch, and the first row again as a batch of 1;
    return the largest float difference and the largest pixel difference after the uint8
    mapping."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def run(rows: slice) -> torch.Tensor:
        feed = {LATENT_INPUT: latents[rows].numpy()}
        if labels is not None:
            feed[LABEL_INPUT] = labels[rows].numpy()
        return torch.from_numpy(session.run([IMAGE_OUTPUT], feed)[0])

    with torch.no_grad():
        expected = generator(latents, labels)
    float_difference, pixel_difference = 0.0, 0
    for rows in (slice(None), slice(0, 1)):
        got, want = run(rows), expected[rows]
        if got.shape != want.shape or not torch.isfinite(got).all():
            return float("inf"), 255
        float_difference = max(float_difference, float((got - want).abs().max()))
        pixel_difference = max(pixel_difference, int(
            (to_uint8(got).int() - to_uint8(want).int()).abs().max()))
    return float_difference, pixel_difference


def seed_latents(checkpoint: GeneratorCheckpoint, seeds: Sequence[int],
                 truncation: float | None = None) -> dict:
    """The latents ``generate`` draws for ``seeds`` (with ``truncation``), as the JSON
    sidecar holds them: ``latents[i]`` is seed ``seeds[i]``'s latent, float32 values written
    exactly; for a conditional generator, ``labels[i]`` is the class the seed gets without a
    label (``seed % num_classes``, as the served model and the gallery's "every class")."""
    generator_config = checkpoint.config
    latents = latent_vectors(seeds, int(generator_config["latent_dim"]), truncation)
    document = {
        "format": LATENTS_FORMAT,
        "about": "Atelier's seeded latents (atelier.core.generate.latent_vectors). Feed "
                 f"latents[i] as '{LATENT_INPUT}' (float32) to get the image of seeds[i].",
        "generator_sha256": state_dict_sha256(checkpoint.state_dict),
        "latent_dim": int(generator_config["latent_dim"]),
        "truncation": truncation if truncation and truncation > 0 else None,
        "seeds": [int(seed) for seed in seeds],
        # float(float32) is exact, and json writes a double so that it reads back unchanged.
        "latents": [[float(value) for value in row] for row in latents.tolist()],
    }
    class_names = class_names_of(checkpoint)
    if class_names:
        document["class_names"] = list(class_names)
        document["labels"] = [int(seed) % len(class_names) for seed in seeds]
    return document


def export_onnx(checkpoint: GeneratorCheckpoint, path: str | Path, *, opset: int = DEFAULT_OPSET,
                seeds: Sequence[int] | None = None, truncation: float | None = None,
                force: bool = False, where: str = "the generator") -> OnnxExport:
    """Export ``checkpoint``'s generator to the ONNX file ``path`` (see the module docstring),
    check it, and, with ``seeds``, write their latents to :func:`seed_latents_path`.

    Refuses an existing ``path`` (or sidecar) unless ``force``, an opset outside
    :data:`SUPPORTED_OPSETS`, and a generator it cannot rebuild (``where`` names it in the
    message). The file is written only once ``onnx.checker`` passed and ONNX Runtime matched
    PyTorch on the seeds' latents (or :data:`PROBE_SEEDS`'), at batch 1 and batch N.

    ``dynamo=False``: torch 2.14's default exporter, ``torch.export``-based, needs
    ``onnxscript``, cannot export the class-conditional generator as it is (its label-range
    check is data-dependent control flow), and took 1.4 to 4.3 s per export of small
    generators against 0.04 to 0.25 s here (benchmarks/README.md, "ONNX export").
    """
    path = Path(path)
    if seeds is not None and not len(seeds):
        raise ExportError("Give at least one seed to write latents for (e.g. --seeds 0-63).")
    latents_path = seed_latents_path(path) if seeds is not None else None
    refuse_existing([path, *([latents_path] if latents_path else [])], force)
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"Opset {opset} is not one this export writes: choose one of "
                          f"{SUPPORTED_OPSETS.start} to {SUPPORTED_OPSETS.stop - 1} (default "
                          f"{DEFAULT_OPSET}, the newest Unity Sentis 1.x-2.1 reads).")
    started = time.perf_counter()
    try:
        generator = load_generator(checkpoint)
    except (ValueError, RuntimeError) as error:  # config or weights that do not fit
        raise GeneratorTooOldError(
            f"{where} cannot be exported: its weights do not fit the architecture its config "
            f"describes ({str(error).splitlines()[0]}). Retrain it with this Atelier (kedro "
            "run --pipeline=train).") from None
    model = _to_onnx(generator, opset)
    metadata = onnx_metadata(checkpoint, generator, opset)
    _describe_graph(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    probe = list(seeds) if seeds else list(PROBE_SEEDS)
    latents = latent_vectors(probe, generator.latent_dim, truncation)
    labels = cycled_labels(generator, probe)
    labels = torch.tensor(labels, dtype=torch.int64) if labels is not None else None
    float_difference, pixel_difference = check_against_pytorch(data, generator, latents, labels)
    if pixel_difference > MAX_PIXEL_DIFFERENCE:
        raise ExportMismatchError(
            f"The ONNX graph of {where} does not reproduce it: ONNX Runtime's pixels differ from "
            f"PyTorch's by up to {pixel_difference}/255 (float {float_difference:.3g}; allowed "
            f"{MAX_PIXEL_DIFFERENCE}/255). Nothing was written; report it with the generator.")
    write_atomically(path, lambda handle: handle.write(data))
    if latents_path is not None:
        document = seed_latents(checkpoint, probe, truncation)
        write_atomically(latents_path, lambda handle: handle.write(json.dumps(document).encode()))
    return OnnxExport(path, opset, len(data), time.perf_counter() - started, float_difference,
                      pixel_difference, len(probe), metadata, latents_path)
