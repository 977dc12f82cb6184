"""Sharded primary images: a preprocessed dataset larger than memory, in a local folder or
on S3, read shard by shard.

Layout (``format`` 1), under a key naming the data and the preprocessing parameters
(:func:`shard_key`)::

    <location>/<key>/index.json              what is there (written last: a dataset whose
                                             index exists is complete)
    <location>/<key>/train/shard-00000.npy   uint8 n x C x H x W, the training split's rows
    <location>/<key>/val/shard-00000.npy     the validation split's rows

Each shard is a plain ``.npy`` file (NumPy's format: a short text header, then the pixels
in C order), so its bytes depend on the pixels alone and its sha256, kept in the index and
checked on every read, names it. Rows are in the order of the tensor path (the manifest's
``ok`` rows sorted by path, training rows then validation rows, each split on its own): the
concatenated shards of a split are byte-equal to ``images[~is_val]`` / ``images[is_val]``
of ``images.pt``.

``<location>`` is a folder or ``s3://bucket/prefix``. S3 goes through fsspec's ``s3fs``
(``pip install 'atelier[s3]'``), with the endpoint from the environment
(``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL`` or ``MLFLOW_S3_ENDPOINT_URL``, in that
order; unset for AWS itself) and boto's usual credentials, so MinIO and moto work as AWS
does. Readers keep at most a few shards in memory (:class:`ShardedImages` reads one at a
time; the training stream, :mod:`atelier.core.training.streaming`, holds a small cache):
memory is bounded by the shard size, not by the dataset's.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atelier.core.storage import write_atomically

SHARD_FORMAT = 1
SPLITS = ("train", "val")
INDEX_NAME = "index.json"
_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")


class ShardError(RuntimeError):
    """A sharded dataset that is missing, incomplete, changed or unreadable."""


# ------------------------------------------------------------------------- storage


def is_remote(location: str) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


class Store:
    """Bytes under one location (a folder, or ``s3://bucket/prefix``), by relative name."""

    def __init__(self, location: str | Path) -> None:
        self.location = str(location).removeprefix("file://").rstrip("/")
        self._fs = None
        if is_remote(self.location):
            if not self.location.startswith("s3://"):
                raise ShardError(f"Shards go to a folder or to s3://bucket/prefix, not "
                                 f"{self.location!r}.")
            self._fs = _s3_filesystem()

    def __repr__(self) -> str:
        return f"Store({self.location!r})"

    def _path(self, name: str) -> str:
        return f"{self.location}/{name}"

    def exists(self, name: str) -> bool:
        if self._fs is None:
            return Path(self._path(name)).is_file()
        return bool(self._fs.exists(self._path(name)))

    def read(self, name: str) -> bytes:
        try:
            if self._fs is None:
                return Path(self._path(name)).read_bytes()
            return self._fs.cat_file(self._path(name))
        except FileNotFoundError:
            raise ShardError(f"{self._path(name)} does not exist: the sharded dataset is "
                             "incomplete or was moved. Run the preprocessing pipeline again "
                             "(kedro run --pipelines=data_ingestion,preprocessing).") from None
        except Exception as error:  # noqa: BLE001 - permissions, the network, the store's errors
            raise ShardError(f"Cannot read {self._path(name)}: {error}{self._hint()}") from None

    def write(self, name: str, data: bytes) -> None:
        """Write ``name`` whole: atomically in a folder (a reader sees the old file or the
        new one), as one PUT on S3 (which is atomic per object)."""
        try:
            if self._fs is None:
                write_atomically(self._path(name), lambda handle: handle.write(data), fsync=False)
            else:
                self._fs.pipe_file(self._path(name), data)
        except Exception as error:  # noqa: BLE001 - as in read()
            raise ShardError(f"Cannot write {self._path(name)}: {error}{self._hint()}") from None

    def check_writable(self) -> None:
        """Write and remove a small probe, so a wrong location stops a run before any
        image is decoded rather than after the first shard."""
        probe = ".atelier-write-check"
        self.write(probe, b"ok")
        try:
            if self._fs is None:
                Path(self._path(probe)).unlink(missing_ok=True)
            else:
                self._fs.rm_file(self._path(probe))
        except OSError:
            pass  # a probe left behind is harmless

    def _hint(self) -> str:
        if self._fs is None:
            return ""
        return (" (check that the bucket exists, the credentials in AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY, and for MinIO or another S3-compatible store "
                "AWS_ENDPOINT_URL)")


def _s3_filesystem():
    try:
        import fsspec
        import s3fs  # noqa: F401 - fsspec's "s3" protocol needs it installed
    except ImportError:
        raise ShardError("Shards on s3:// need s3fs: pip install 'atelier[s3]' "
                         "(or pip install s3fs).") from None
    endpoint = next((os.environ[name] for name in _ENDPOINT_VARIABLES if os.environ.get(name)), None)
    # No listing cache: another process (a preprocessing worker) may have just written.
    return fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False,
                             client_kwargs={"endpoint_url": endpoint} if endpoint else {})


# ------------------------------------------------------------------------- shard files


def encode_shard(images: np.ndarray) -> bytes:
    """``images`` (uint8 n x C x H x W) as ``.npy`` bytes: the same pixels, the same bytes."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"A shard holds uint8 n x C x H x W, got {images.dtype} {images.shape}.")
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(images), allow_pickle=False)
    return buffer.getvalue()


def decode_shard(data: bytes, name: str, sha256: str | None = None) -> torch.Tensor:
    """The uint8 tensor in a shard's bytes, after checking them against ``sha256``."""
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ShardError(f"Shard {name} does not match its index (sha256 differs): it was "
                         "changed or truncated after preprocessing. Run the preprocessing "
                         "pipeline again.")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError) as error:
        raise ShardError(f"Shard {name} is not a readable .npy file ({error}).") from None
    return torch.from_numpy(array)


def shard_name(split: str, number: int) -> str:
    return f"{split}/shard-{number:05d}.npy"


def images_per_shard(shard_mb: float, channels: int, resolution: int) -> int:
    """How many images fill a shard of ``shard_mb`` MiB (at least one)."""
    if not shard_mb > 0:
        raise ValueError(f"preprocessing.shard_mb must be positive, got {shard_mb}.")
    return max(1, int(shard_mb * 2**20) // (channels * resolution * resolution))


def shard_key(data_hash: str, params: dict[str, Any]) -> str:
    """``<16 hex of the data hash>-<12 hex of the parameters>``: a new dataset or a new
    setting gets its own folder; the same ones find theirs again."""
    settings = json.dumps({**params, "format": SHARD_FORMAT}, sort_keys=True)
    return f"{data_hash[:16]}-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


# ------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Shard:
    name: str       # relative to the dataset's location, e.g. "train/shard-00000.npy"
    count: int
    sha256: str


@dataclass(frozen=True)
class ShardedImages:
    """One split of a sharded dataset: where it is and what its shards hold. Small and
    picklable (the pixels stay in storage), so it is what training ranks are handed.

    Indices are the split's row numbers (0 .. count-1), in shard order.
    """

    location: str   # <location>/<key>
    split: str
    shards: tuple[Shard, ...]
    channels: int
    resolution: int

    @classmethod
    def open(cls, location: str | Path, split: str = "train") -> ShardedImages:
        """The ``split`` of the dataset at ``location`` (``<location>/<key>``)."""
        index = read_index(location)
        return cls.from_index(str(location).rstrip("/"), index, split)

    @classmethod
    def from_index(cls, location: str, index: dict[str, Any], split: str) -> ShardedImages:
        if split not in index["splits"]:
            raise ShardError(f"{location} has no {split!r} split (it has "
                             f"{sorted(index['splits'])}).")
        shards = tuple(Shard(str(name), int(count), str(sha))
                       for name, count, sha in index["splits"][split]["shards"])
        return cls(location, split, shards, int(index["channels"]), int(index["resolution"]))

    def __len__(self) -> int:
        return sum(shard.count for shard in self.shards)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.channels, self.resolution, self.resolution)

    @property
    def bytes_per_image(self) -> int:
        return self.channels * self.resolution * self.resolution

    def identity(self) -> str:
        """sha256 over the split's shard hashes, in order: the same rows in the same shards."""
        return hashlib.sha256("".join(shard.sha256 for shard in self.shards).encode()).hexdigest()

    def starts(self) -> list[int]:
        """The row number each shard starts at."""
        starts, total = [], 0
        for shard in self.shards:
            starts.append(total)
            total += shard.count
        return starts

    def read_shard(self, number: int, store: Store | None = None) -> torch.Tensor:
        """Shard ``number``'s images (uint8 n x C x H x W), checked against the index."""
        shard = self.shards[number]
        store = store or Store(self.location)
        images = decode_shard(store.read(shard.name), f"{self.location}/{shard.name}", shard.sha256)
        if tuple(images.shape) != (shard.count, self.channels, self.resolution, self.resolution):
            raise ShardError(f"Shard {self.location}/{shard.name} holds {tuple(images.shape)}, "
                             f"its index says {shard.count} images of {self.shape[1:]}.")
        return images

    def iter_shards(self) -> Iterator[torch.Tensor]:
        store = Store(self.location)
        for number in range(len(self.shards)):
            yield self.read_shard(number, store)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The split in row order, ``batch_size`` images at a time (one shard in memory)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        pending: list[torch.Tensor] = []
        held = 0
        for images in self.iter_shards():
            pending.append(images)
            held += len(images)
            while held >= batch_size:
                joined = torch.cat(pending)
                yield joined[:batch_size]
                pending, held = [joined[batch_size:]], held - batch_size
        if held:
            yield torch.cat(pending)

    def load(self) -> torch.Tensor:
        """The whole split as one tensor (what ``images.pt`` would hold): for small splits."""
        parts = list(self.iter_shards())
        if not parts:
            return torch.empty((0, self.channels, self.resolution, self.resolution), dtype=torch.uint8)
        return torch.cat(parts)

    def take(self, rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The images at ``rows`` (in that order), reading each shard they touch once."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= len(self)):
            raise IndexError(f"Rows outside 0..{len(self) - 1} of {self.location} ({self.split}).")
        starts = torch.tensor(self.starts())
        out = torch.empty((len(rows), self.channels, self.resolution, self.resolution), dtype=torch.uint8)
        owners = torch.searchsorted(starts, rows, right=True) - 1
        store = Store(self.location)
        for number in owners.unique().tolist():
            here = owners == number
            out[here] = self.read_shard(number, store)[rows[here] - starts[number]]
        return out


def primary_split(primary_images: dict, split: str) -> torch.Tensor | ShardedImages:
    """The ``train`` or ``val`` rows of a ``primary_images`` record: a slice of its tensor,
    or, when preprocessing wrote shards, that split of the sharded dataset (still in
    storage; :meth:`ShardedImages.load` reads it whole)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}.")
    if "shards" in primary_images:
        shards = primary_images["shards"]
        return ShardedImages.from_index(shards["location"], shards["index"], split)
    rows = primary_images["is_val"] if split == "val" else ~primary_images["is_val"]
    return primary_images["images"][rows]


def read_index(location: str | Path) -> dict[str, Any]:
    """The ``index.json`` of the dataset at ``location``, checked for its format."""
    store = Store(location)
    if not store.exists(INDEX_NAME):
        raise ShardError(f"No sharded dataset at {location}: {INDEX_NAME} is missing (it is "
                         "written last, so the preprocessing that wrote it did not finish).")
    try:
        index = json.loads(store.read(INDEX_NAME))
    except ValueError as error:
        raise ShardError(f"{location}/{INDEX_NAME} is not readable JSON ({error}).") from None
    if not isinstance(index, dict) or index.get("format") != SHARD_FORMAT:
        raise ShardError(f"{location} holds shard format {index.get('format')}; this Atelier "
                         f"reads format {SHARD_FORMAT}. Run the preprocessing pipeline again.")
    return index


# ------------------------------------------------------------------------- writing


def split_slices(count: int, per_shard: int) -> list[slice]:
    """Rows 0..count-1 cut into consecutive slices of ``per_shard`` (the last shorter)."""
    return [slice(start, min(start + per_shard, count)) for start in range(0, count, per_shard)]


def write_shard(location: str, split: str, number: int, images: np.ndarray) -> list:
    """Write one shard; returns its index entry ``[name, count, sha256]``."""
    data = encode_shard(images)
    name = shard_name(split, number)
    Store(location).write(name, data)
    return [name, int(len(images)), hashlib.sha256(data).hexdigest()]


def write_index(location: str, index: dict[str, Any]) -> dict[str, Any]:
    """Write ``index.json`` (after every shard: it marks the dataset complete); returns the
    index as :func:`read_index` will read it back."""
    text = json.dumps({"format": SHARD_FORMAT, **index}, indent=1, sort_keys=True)
    Store(location).write(INDEX_NAME, text.encode())
    return json.loads(text)
