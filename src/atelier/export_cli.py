"""``atelier export onnx MODEL_URI OUT.onnx``: a registered or trained generator as an ONNX file.

    atelier export onnx models:/atelier-generator@champion generator.onnx --seeds 0-63

``MODEL_URI`` is ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN_ID`` or a
generator file (``data/06_models/generator.pt``); models and runs are read from the
tracking store ``kedro run`` writes to (``--tracking-uri``, else ``MLFLOW_TRACKING_URI``,
else ``conf/*/mlflow.yml``, as for ``atelier gallery``). ``--seeds`` also writes the
latents of those seeds (``OUT.latents.json``; ``--truncation`` applies the truncation trick
to them). The graph, its checks and its metadata: :mod:`atelier.core.export`.

Exit status: 0 written; 2 refused, with a message saying why and what to do (nothing is
written then).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from atelier.core.errors import AtelierError
from atelier.core.export import (
    DEFAULT_OPSET,
    OnnxExport,
    export_onnx,
    refuse_existing,
    seed_latents_path,
)
from atelier.tracking.export import resolve_generator
from atelier.tracking.store import configured_store

FORMATS = ("onnx",)


def parse_seeds(text: str) -> list[int]:
    """``"0-63"``, ``"7"``, ``"0-3,10,20-21"``: the seeds, in that order (ranges inclusive)."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last if dash else first)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a list of seeds: write e.g. 0-63 or 0-3,10,20-21.") from None
        if low > high:
            raise argparse.ArgumentTypeError(f"The seed range {part.strip()} runs backwards.")
        seeds += range(low, high + 1)
    return seeds


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="atelier export",
        description="Export a generator to a file for runtimes without PyTorch: ONNX Runtime, "
                    "Unity Sentis, Unreal NNE, C++ tools.")
    parser.add_argument("format", choices=FORMATS, help="the file format: onnx")
    parser.add_argument("model_uri", metavar="MODEL_URI",
                        help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID, or a "
                             "generator file such as data/06_models/generator.pt")
    parser.add_argument("output", metavar="OUT.onnx", help="the file to write")
    parser.add_argument("--seeds", type=parse_seeds, default=None,
                        help="also write these seeds' latents to OUT.latents.json, e.g. 0-63 "
                             "(the gallery's images of those seeds)")
    parser.add_argument("--truncation", type=float, default=None,
                        help="truncation trick for the --seeds latents (as the gallery's "
                             "slider; default: off)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help="ONNX opset (default: %(default)s, which Unity Sentis 1.x-2.1 reads)")
    parser.add_argument("--force", action="store_true",
                        help="replace OUT.onnx (and OUT.latents.json) when they exist")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking store for models:/ and runs:/ (default: "
                             "MLFLOW_TRACKING_URI, else the project's conf/*/mlflow.yml)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run ``atelier export`` with ``argv`` (default: ``sys.argv[2:]``)."""
    args = parse_args(sys.argv[2:] if argv is None else argv)
    # A command's output, not a download dialog: no progress bar per file of the model.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        exported, description = _export(args)
    except (AtelierError, LookupError) as error:
        print(f"atelier export: {error}", file=sys.stderr)
        return 2
    print(_summary(exported, description))
    return 0


def _export(args: argparse.Namespace) -> tuple[OnnxExport, str]:
    output = Path(args.output).absolute()
    # Refused before anything is downloaded; export_onnx checks again just before writing.
    refuse_existing([output, *([seed_latents_path(output)] if args.seeds else [])], args.force)
    tracking_uri = registry_uri = None
    if args.model_uri.startswith(("models:/", "runs:/")):
        store = configured_store(args.tracking_uri)
        store.require_existing()
        tracking_uri, registry_uri = store.tracking_uri, store.registry_uri
    source = resolve_generator(args.model_uri, tracking_uri, registry_uri)
    exported = export_onnx(source.checkpoint, output, opset=args.opset, seeds=args.seeds,
                           truncation=args.truncation, force=args.force,
                           where=source.description)
    return exported, source.description


def _summary(exported: OnnxExport, description: str) -> str:
    meta = exported.metadata
    lines = [
        f"atelier export: {description} -> {exported.path}",
        f"  {exported.size_bytes / 1e6:.2f} MB, opset {exported.opset}, {meta['architecture']} "
        f"{meta['resolution']} x {meta['resolution']}, {meta['channels']} channel(s), "
        f"exported and checked in {exported.seconds:.2f} s",
        f"  inputs: {meta['inputs']}",
        f"  output: {meta['output']}",
        f"  checked against PyTorch on {exported.checked_latents} latents (batch 1 and "
        f"{exported.checked_latents}): max difference {exported.max_float_difference:.2g}, "
        f"{exported.max_pixel_difference}/255 per pixel",
    ]
    if exported.latents_path is not None:
        lines.append(f"  seed latents: {exported.latents_path}")
    return "\n".join(lines)
