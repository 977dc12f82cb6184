"""Evaluation throughput: Atelier's FID CLI against ``python -m pytorch_fid`` on the same folders.

    .venv/bin/python benchmarks/eval_throughput.py [--images 500] [--dims 2048] [--device cpu]
        [--batch-size 50] [--folders DIR_A DIR_B] [--torch-home DIR]

Runs, in one go and on the same two folders (by default two disjoint sets of ``--images``
handwritten digits, 64 x 64 PNGs, written to a temporary folder):

1. ``python -m pytorch_fid DIR_A DIR_B``
2. ``python -m atelier.core.metrics fid DIR_A DIR_B --cache-dir C`` with an empty cache
   (both folders through Inception, DIR_B's statistics cached)
3. the same again: DIR_B's statistics come from the cache, only DIR_A goes through Inception

and prints, for each, the wall time of the whole command (interpreter start, model load,
decoding, Inception, statistics; best of ``--repeats`` rounds, each with a fresh cache) and
the images scored per second (both folders' images over that time), plus the FIDs, which
must agree. Needs the FID weights where
pytorch-fid finds them (``--torch-home``, default ``$TORCH_HOME``); with stand-in weights
(scripts/build_standin_inception.py) the timings are the same, the FIDs are not comparable.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from atelier.core.metrics.folders import list_image_files


def write_digit_folders(root: Path, count: int, size: int = 64) -> tuple[Path, Path]:
    """Two folders of ``count`` different digits each (scikit-learn's set, bicubic upscale)."""
    from sklearn.datasets import load_digits

    pictures = (load_digits().images * (255 / 16)).round().astype(np.uint8)
    if 2 * count > len(pictures):
        raise SystemExit(f"--images can be at most {len(pictures) // 2} with the bundled digits; "
                         "pass --folders for more.")
    folders = (root / "a", root / "b")
    for folder, offset in zip(folders, (0, count), strict=True):
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = Image.fromarray(pictures[offset + i]).resize((size, size), Image.BICUBIC)
            image.save(folder / f"{i:05d}.png")
    return folders


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return elapsed, float(re.search(r"FID:\s+(\S+)", result.stdout).group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500, help="images per generated folder")
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="decoding processes for both tools (default: pytorch-fid's)")
    parser.add_argument("--folders", nargs=2, metavar="DIR", help="use these folders instead")
    parser.add_argument("--torch-home", default=None, help="TORCH_HOME holding the weights")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of the three commands; the best time of each is kept")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]  # other jobs on the machine skew every figure
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.torch_home:
        env["TORCH_HOME"] = str(Path(args.torch_home).resolve())
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder_a, folder_b = (map(Path, args.folders) if args.folders
                              else write_digit_folders(scratch / "images", args.images))
        images = sum(len(list_image_files(folder)) for folder in (folder_a, folder_b))
        common = ["--dims", str(args.dims), "--batch-size", str(args.batch_size),
                  "--device", args.device]
        if args.num_workers is not None:
            common += ["--num-workers", str(args.num_workers)]
        pytorch_fid = [sys.executable, "-m", "pytorch_fid", str(folder_a), str(folder_b), *common]
        runs: dict[str, tuple[float, float]] = {}
        for round_ in range(args.repeats):
            atelier = [sys.executable, "-m", "atelier.core.metrics", "fid", str(folder_a),
                       str(folder_b), *common, "--cache-dir", str(scratch / f"cache{round_}")]
            for name, command in (("python -m pytorch_fid", pytorch_fid),
                                  ("atelier fid, first run", atelier),
                                  ("atelier fid, cached reference", atelier)):
                seconds, fid = timed(command, env)
                runs[name] = min(runs.get(name, (seconds, fid)), (seconds, fid))

    print(f"\n{images} images ({images // 2} per folder), dims {args.dims}, "
          f"batch {args.batch_size}, "
          f"device {args.device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads), torch {torch.__version__}; load average "
          f"before {load_before:.1f}, after {os.getloadavg()[0]:.1f}\n")
    print("| command | wall time (s) | images/s | FID |")
    print("| --- | ---: | ---: | ---: |")
    for name, (seconds, fid) in runs.items():
        print(f"| {name} | {seconds:.1f} | {images / seconds:.1f} | {fid:.6g} |")
    fids = [fid for _, fid in runs.values()]
    agree = max(fids) - min(fids) <= 1e-3 * max(abs(f) for f in fids)
    print(f"\nFIDs agree within 1e-3 relative: {agree}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
