"""Metrics of image folders, read as ``python -m pytorch_fid`` reads them.

pytorch-fid's extensions, not recursive, sorted; each file through PIL's ``convert('RGB')``;
batches decoded by a ``DataLoader`` with pytorch-fid's default of ``min(8, CPUs)`` workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_fid.fid_score import IMAGE_EXTENSIONS

from atelier.core.metrics.cache import reference_statistics_of_files
from atelier.core.metrics.features import extract_features
from atelier.core.metrics.fid import compute_fid, feature_statistics
from atelier.core.metrics.inception import FIDInception
from atelier.core.metrics.inception_score import compute_inception_score


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """The images pytorch-fid reads from ``folder``: its extensions, lower case, not
    recursive, sorted (``compute_statistics_of_path``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Not a folder of images: {folder}")
    files = sorted(file for ext in IMAGE_EXTENSIONS for file in folder.glob(f"*.{ext}"))
    if not files:
        raise FileNotFoundError(
            f"No images in {folder} (looked for *.{{{','.join(sorted(IMAGE_EXTENSIONS))}}}, "
            "not in subfolders, as pytorch-fid does).")
    return files


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, files: Sequence[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as image:
            rgb = np.asarray(image.convert("RGB"))  # as pytorch-fid's ImagePathDataset
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def _folder_batches(files: Sequence[Path], batch_size: int,
                    num_workers: int) -> Iterator[torch.Tensor]:
    yield from torch.utils.data.DataLoader(_ImageFiles(files), batch_size=batch_size,
                                           num_workers=num_workers, shuffle=False)


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return min(cpus, 8)  # pytorch-fid's default


def compute_fid_between_folders(folder_a: str | os.PathLike, folder_b: str | os.PathLike,
                                inception: FIDInception, dims: int = 2048, batch_size: int = 50,
                                num_workers: int | None = None,
                                cache_dir: str | os.PathLike | None = None) -> float:
    """FID between two image folders, read as ``python -m pytorch_fid`` reads them.

    ``folder_b`` is the reference: with ``cache_dir``, its statistics are cached (keyed by
    its files' names and bytes, dims and weights) and reused on the next call.
    """
    workers = _default_workers() if num_workers is None else num_workers
    files_a, files_b = list_image_files(folder_a), list_image_files(folder_b)
    with Image.open(files_b[0]) as first:
        resolution = f"{first.height}x{first.width}px"
    reference = reference_statistics_of_files(
        inception, files_b, _folder_batches(files_b, batch_size, workers),
        resolution=resolution, dims=dims, cache_dir=cache_dir)
    features = extract_features(inception, _folder_batches(files_a, batch_size, workers), dims=dims,
                                total=len(files_a)).features
    return compute_fid(*feature_statistics(features), reference.mu, reference.sigma)


def compute_inception_score_of_folder(folder: str | os.PathLike, inception: FIDInception,
                                      splits: int = 10, batch_size: int = 50,
                                      num_workers: int | None = None) -> tuple[float, float]:
    """Inception Score (mean, std) of the images in ``folder`` (read as pytorch-fid reads them)."""
    workers = _default_workers() if num_workers is None else num_workers
    files = list_image_files(folder)
    logits = extract_features(inception, _folder_batches(files, batch_size, workers), dims=2048,
                              logits=True, total=len(files)).logits
    return compute_inception_score(logits, splits)
