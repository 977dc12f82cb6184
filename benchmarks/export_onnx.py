"""ONNX export: time, file size, agreement with PyTorch and generation speed, per generator shape.

    .venv/bin/python benchmarks/export_onnx.py [--repeats 3] [--seeds 64] [--threads 1]
        [--registration]

For each shape below, a DCGAN whose batch-norm statistics are computed for its weights
(``recalibrate_batchnorm``, as training does for the EMA generator) is exported with
``atelier.core.export.export_onnx`` as ``atelier export onnx`` and the registration run it:
trace, batch-norm folding, ``onnx.checker``, the ONNX Runtime check against PyTorch at
batch 1 and batch ``--seeds``, the write, and the seed latents. Printed per shape:

- export time (best of ``--repeats``): as ``atelier export onnx`` without ``--seeds``
  (checked on 8 latents), and with ``--seeds`` latents checked and written (as the
  registration does with 64); the file size, beside the generator file (``generator.pt``,
  which the registered pyfunc model holds);
- the largest float and pixel (uint8, in levels of 255) differences between ONNX Runtime
  and PyTorch over the ``--seeds`` seeds' latents;
- images per second at batch 64 on the CPU: ONNX Runtime against PyTorch (``--threads``
  threads each).

``--registration`` also times what ``registration.onnx: true`` adds to a registration:
``atelier.tracking.export.log_onnx_export`` (export + logging both files) in an MLflow run
of a temporary SQLite store, for the ``make train`` shape.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch

from atelier.core.export import export_onnx
from atelier.core.models import Generator, GeneratorCheckpoint
from atelier.core.training.steps import recalibrate_batchnorm

# (what, resolution, channels, g_width, latent_dim, classes)
SHAPES = [
    ("make train default (digits)", 32, 1, 32, 64, 0),
    ("class-conditional digits", 32, 1, 32, 64, 10),
    ("RGB 64, conf/studio widths", 64, 3, 64, 100, 0),
    ("RGB 128, conf/studio widths", 128, 3, 64, 100, 0),
    ("RGB 256, conf/studio widths", 256, 3, 64, 100, 0),
]


def checkpoint_for(resolution: int, channels: int, g_width: int, latent_dim: int,
                   classes: int) -> GeneratorCheckpoint:
    torch.manual_seed(0)
    generator = Generator(resolution, channels, latent_dim, g_width, num_classes=classes)
    recalibrate_batchnorm(generator, batches=4, batch_size=32)
    return GeneratorCheckpoint.from_generator(generator.eval())


def images_per_second(run, batch: int = 64, seconds: float = 2.0) -> float:
    run()  # warm-up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run()
        count += batch
    return count / (time.perf_counter() - started)


def measure(checkpoint: GeneratorCheckpoint, folder: Path, repeats: int, seeds: int,
            threads: int) -> dict:
    plain = min(export_onnx(checkpoint, folder / f"p{repeat}.onnx").seconds
                for repeat in range(repeats))
    times = []
    for repeat in range(repeats):
        exported = export_onnx(checkpoint, folder / f"g{repeat}.onnx", seeds=range(seeds))
        times.append(exported.seconds)
    weights = folder / "generator.pt"
    checkpoint.save(weights)
    generator = Generator(**checkpoint.config)
    generator.load_state_dict(checkpoint.state_dict)
    generator.eval()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(exported.path), options,
                                           providers=["CPUExecutionProvider"])
    z = torch.randn(64, generator.latent_dim)
    labels = torch.arange(64) % generator.num_classes if generator.num_classes else None
    feed = {"latent": z.numpy()} | ({"label": labels.numpy()} if labels is not None else {})

    def torch_run():
        with torch.no_grad():
            generator(z, labels)

    return {"plain": plain, "seconds": min(times), "mb": exported.size_bytes / 1e6,
            "pt_mb": weights.stat().st_size / 1e6, "float": exported.max_float_difference,
            "pixel": exported.max_pixel_difference,
            "ort": images_per_second(lambda: session.run(["image"], feed)),
            "torch": images_per_second(torch_run)}


def time_registration(checkpoint: GeneratorCheckpoint, folder: Path) -> float:
    import mlflow

    from atelier.tracking.export import log_onnx_export

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    with mlflow.start_run(experiment_id=mlflow.set_experiment("onnx-benchmark").experiment_id):
        started = time.perf_counter()
        log_onnx_export(checkpoint)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=64, help="latents checked and written")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch and ORT)")
    parser.add_argument("--registration", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    print(f"{'shape':<30} {'export':>8} {'+seeds':>8} {'.onnx':>9} {'.pt':>9} {'max |diff|':>10} {'pixels':>7} "
          f"{'ORT img/s':>10} {'torch img/s':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for index, (what, *shape) in enumerate(SHAPES):
            folder = Path(tmp) / str(index)
            folder.mkdir()
            row = measure(checkpoint_for(*shape), folder, args.repeats, args.seeds, args.threads)
            print(f"{what:<30} {row['plain']:>7.2f}s {row['seconds']:>7.2f}s {row['mb']:>7.2f}MB {row['pt_mb']:>7.2f}MB "
                  f"{row['float']:>10.1e} {row['pixel']:>5}/255 {row['ort']:>10.0f} "
                  f"{row['torch']:>11.0f}")
        if args.registration:
            seconds = time_registration(checkpoint_for(*SHAPES[0][1:]), Path(tmp))
            print(f"registration.onnx: log_onnx_export for the make-train shape: {seconds:.2f} s")


if __name__ == "__main__":
    main()
