"""Images per second: Atelier's ingestion + preprocessing against a plain Pillow loop.

    .venv/bin/python benchmarks/ingest_throughput.py                 # the digits sample
    .venv/bin/python benchmarks/ingest_throughput.py --source DIR    # your own folder
    .venv/bin/python benchmarks/ingest_throughput.py --photos 300    # synthetic 1600x1200 JPEGs

Atelier's path is what the two pipelines run, minus Kedro: ``scan_images`` (hash, decode
and validate every file) then ``load_training_images`` (decode, convert, resize, crop, in
parallel over the cores). The baseline is the loop most scripts start with: open, convert,
resize, ``np.asarray``, one file after another, in one process, with no validation. Both
read the same files from a warm page cache; each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from atelier.core import images


def write_digits(folder: Path) -> None:
    """The bundled sample, exactly as ``kedro run --pipeline=sample_data`` writes it."""
    from atelier.pipelines.sample_data.nodes import render_sample_digits

    for name, content in render_sample_digits({"image_size": 64}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)


def write_photos(folder: Path, count: int) -> None:
    """``count`` 1600 x 1200 JPEGs (smooth gradients plus noise, like photographs)."""
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(0, 1, 1600), np.linspace(0, 1, 1200))
    for index in range(count):
        phase = rng.uniform(0, 6.28, 3)
        rgb = np.stack([np.sin(6 * x + 4 * y + p) for p in phase], axis=-1) * 100 + 128
        rgb += rng.normal(0, 12, rgb.shape)
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(
            folder / f"photo_{index:04d}.jpg", quality=90)


def plain_loop(root: Path, paths: list[str], resolution: int, channels: int) -> np.ndarray:
    """The baseline: one process, no hashing, no validation, resize (not crop) to a square."""
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for relative in paths:
        with Image.open(root / relative) as image:
            resized = image.convert(mode).resize((resolution, resolution), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(resized))
    return np.stack(arrays)


def atelier(root: Path, resolution: int, channels: int, workers: int | None) -> torch.Tensor:
    """What data_ingestion + preprocessing run: inspect every file, decode the ok ones."""
    found = images.scan_images(root, min_side=resolution, workers=workers)
    kept = [f.path for f in found if f.status == "ok"]
    tensor, _ = images.load_training_images(root, kept, resolution, channels, workers=workers)
    return tensor


def _spin(n: int) -> int:
    return sum(i * i for i in range(n))


def parallel_headroom(workers: int) -> float:
    """How much faster ``workers`` processes finish pure-CPU work than one, right now.

    Close to ``workers`` on an idle machine; near 1 when other jobs hold the cores, in
    which case no process pool can speed anything up and the figures below say so.
    """
    jobs = [2_000_000] * (2 * workers)
    start = time.perf_counter()
    [_spin(n) for n in jobs]
    serial = time.perf_counter() - start
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_spin, jobs))
    return serial / (time.perf_counter() - start)


def best_time(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, help="folder of images (default: the digits)")
    parser.add_argument("--photos", type=int, default=0,
                        help="benchmark this many synthetic 1600x1200 JPEGs instead")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = args.source
        if root is None:
            root = Path(scratch)
            if args.photos:
                write_photos(root, args.photos)
            else:
                write_digits(root)
        paths = images.list_files(root)
        for relative in paths:  # warm the page cache so no method pays for the disk
            (root / relative).read_bytes()

        workers = images.resolve_workers(args.workers)
        described = args.source or (f"{args.photos} synthetic 1600x1200 JPEGs" if args.photos
                                    else "the digits sample (64x64 PNG)")
        print(f"{len(paths)} files: {described}; to {args.resolution}x{args.resolution}, "
              f"{args.channels} channel(s)")
        print(f"Python {platform.python_version()}, torch {torch.__version__}, "
              f"{os.cpu_count()} CPUs ({workers} usable), best of {args.repeat}")
        print(f"Parallel headroom now: {parallel_headroom(workers):.2f}x on {workers} processes "
              "for pure-CPU work (the most any pool can gain here)")
        rows = [
            ("plain Pillow loop, 1 process", lambda: plain_loop(root, paths, args.resolution,
                                                                args.channels)),
            ("Atelier, 1 process", lambda: atelier(root, args.resolution, args.channels, 1)),
            (f"Atelier, {workers} processes", lambda: atelier(root, args.resolution,
                                                              args.channels, workers)),
        ]
        baseline = None
        for name, run in rows:
            seconds = best_time(run, args.repeat)
            rate = len(paths) / seconds
            baseline = baseline or rate
            print(f"  {name:<32} {rate:9,.0f} images/s  ({seconds:6.2f} s, "
                  f"{rate / baseline:4.2f}x the plain loop)")
        scan = best_time(lambda: images.scan_images(root, min_side=args.resolution,
                                                    workers=workers), args.repeat)
        print(f"  of which ingestion (hash + validate): {len(paths) / scan:,.0f} images/s")


if __name__ == "__main__":
    sys.exit(main())
