"""Command line for image folders, comparable to ``python -m pytorch_fid``::

    python -m atelier.core.metrics fid DIR_A DIR_B [--dims D] [--batch-size B] [--device DEV]
    python -m atelier.core.metrics is DIR [--splits N]

prints ``FID: <value>`` or ``IS: <mean> +- <std>`` on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from atelier.core.errors import InceptionWeightsNotFoundError
from atelier.core.metrics.folders import (
    compute_fid_between_folders,
    compute_inception_score_of_folder,
)
from atelier.core.metrics.inception import WEIGHTS_FILENAME, load_inception, resolve_device
from atelier.core.metrics.network import FID_DIMS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m atelier.core.metrics",
        description="FID and Inception Score of image folders with pytorch-fid's FID Inception.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--batch-size", type=int, default=50, help="images per Inception batch")
    common.add_argument("--device", default=None,
                        help="cuda, cuda:0, cpu, ... (default: cuda when available, else cpu)")
    common.add_argument("--weights", default="auto",
                        help=f"'auto' (default: {WEIGHTS_FILENAME} from the torch hub cache, "
                        "else downloaded as pytorch-fid does), 'official' (and refuse any other "
                        "file), or the path of a weights file")
    common.add_argument("--num-workers", type=int, default=None,
                        help="image decoding processes (default: min(8, CPUs), as pytorch-fid)")
    commands = parser.add_subparsers(dest="command", required=True)
    fid = commands.add_parser("fid", parents=[common], help="FID between two folders")
    fid.add_argument("folders", nargs=2, metavar="DIR", help="DIR_A DIR_B (DIR_B: the reference)")
    fid.add_argument("--dims", type=int, default=2048, choices=FID_DIMS,
                     help="Inception feature dims (pytorch-fid's blocks)")
    fid.add_argument("--cache-dir", default=None,
                     help="cache DIR_B's statistics here and reuse them when unchanged")
    score = commands.add_parser("is", parents=[common], help="Inception Score of a folder")
    score.add_argument("folder", metavar="DIR")
    score.add_argument("--splits", type=int, default=10, help="number of splits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        inception = load_inception(args.weights, resolve_device(args.device))
        if args.command == "fid":
            value = compute_fid_between_folders(*args.folders, inception, dims=args.dims,
                                                batch_size=args.batch_size,
                                                num_workers=args.num_workers,
                                                cache_dir=args.cache_dir)
            print(f"FID: {value}")
        else:
            mean, std = compute_inception_score_of_folder(args.folder, inception, args.splits,
                                                          args.batch_size, args.num_workers)
            print(f"IS: {mean} +- {std}")
    except (InceptionWeightsNotFoundError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
