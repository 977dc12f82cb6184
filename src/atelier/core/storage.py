"""File helpers shared by core and the Kedro glue: crash-safe writes, content hashes, the
dataset identity (:func:`dataset_hash`), the weights' identity (:func:`state_dict_sha256`)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(
    path: str | Path, write: Callable[[BinaryIO], object], fsync: bool = True
) -> None:
    """Write ``path`` so that readers see either the old file or the complete new one.

    ``write`` receives a binary handle on a temporary file in the same folder; the file is
    flushed, fsynced and renamed over ``path`` (``os.replace`` is atomic on POSIX), and the
    folder is fsynced so the rename itself survives a power cut. A failure leaves ``path``
    untouched and removes the temporary file. ``fsync=False`` keeps the atomic rename but
    skips both syncs, for writers of many small files that sync once at the end.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not fsync:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_hash(paths: list[str], sha256s: list[str]) -> str:
    """The dataset's identity, ``data_hash``: sha256 over (relative path, file sha256) pairs.

    Sorted by path, so the order files were found in does not matter. Two image sources hash
    alike exactly when they hold the same files (paths and bytes): it changes when any file
    is added, removed, renamed or edited. Computed from the manifest (one row per input
    file); checkpoints, lineage tags and ``atelier.reproduce`` all use this one value.
    """
    digest = hashlib.sha256()
    for path, sha in sorted(zip(paths, sha256s, strict=True)):
        digest.update(f"{path}\0{sha}\n".encode())
    return digest.hexdigest()


def state_dict_sha256(state_dict: dict) -> str:
    """sha256 over a state dict's names, dtypes, shapes and raw tensor bytes, in key order.

    Unlike hashing a ``torch.save`` file, this depends only on the weights themselves. The
    run's ``generator_sha256`` tag and the ONNX export's metadata hold this value.
    """
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            digest.update(f"{name}={tensor!r}".encode())
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
