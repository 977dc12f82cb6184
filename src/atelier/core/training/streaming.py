"""Training from shards: each rank streams its own share of a sharded split, epoch by epoch.

The order is a function of (seed, epoch, rank, world size) alone:

- epoch ``e`` deals the split's shards out in an order drawn from (seed, e), the same on
  every rank: rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...``. Every shard
  goes to exactly one rank, so each epoch the ranks read disjoint shares whose union is
  the whole split;
- within a shard, the rows come in an order drawn from (seed, e, shard);
- a rank's stream is its epoch 0 share, then its epoch 1 share, and so on; step ``s``
  takes positions ``(s - 1) * b .. s * b - 1`` of it (``b`` = the per-rank batch), across
  an epoch boundary when it falls inside the step, as the tensor path does.

So the loader's position after step ``s`` is ``s * b`` images into the stream: a resumed
run reads exactly what an uninterrupted one would have, and a checkpoint records the
position (:meth:`StreamedBatches.position`) to check that the data it continues on is the
data it stopped on. With another world size the shards are dealt differently: a run
resumed on more or fewer ranks continues at the same step with the same global batch,
but the epoch in progress is re-dealt (some of its images may come twice or not at all
before the next epoch starts; every later epoch again covers the split once), so it is not
bit-identical to an uninterrupted run.

Memory: a rank holds at most ``cache_shards`` decoded shards plus the one being fetched
in the background (the next in its order), never the split.
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from atelier.core.errors import CheckpointMismatchError
from atelier.core.shards import ShardedImages, Store
from atelier.core.training.batches import Batches, _stream_seed
from atelier.core.training.config import TrainingConfig

log = logging.getLogger(__name__)

# Keep the shard-order and row-order streams apart from the tensor path's epoch stream.
_SHARD_ORDER_SALT = 0x61C8864680B583EB
_ROW_ORDER_SALT = 0x3C6EF372FE94F82B


class ShardStream:
    """Rank ``rank`` of ``world_size``'s endless sequence of row numbers of a sharded split."""

    def __init__(self, images: ShardedImages, seed: int, rank: int, world_size: int) -> None:
        if len(images.shards) < world_size:
            raise ValueError(
                f"The {images.split} split at {images.location} has {len(images.shards)} "
                f"shard(s) for {world_size} training processes: every process needs at least "
                "one shard per epoch. Lower preprocessing.shard_mb (smaller shards) and run "
                "the preprocessing again, or train on fewer processes.")
        self.images, self.seed, self.rank, self.world_size = images, seed, rank, world_size
        self.counts = [shard.count for shard in images.shards]
        self.starts = images.starts()
        self._epoch_starts = [0]  # stream position where epoch i begins, grown on demand
        # Every step asks for the orders of the epoch and shard it is in: draw each once.
        self.shard_order = functools.lru_cache(maxsize=4)(self.shard_order)
        self.row_order = functools.lru_cache(maxsize=4)(self.row_order)

    def shard_order(self, epoch: int) -> list[int]:
        """This rank's shards in epoch ``epoch``, in the order it reads them (not to be
        modified: the list is shared by the calls for the same epoch)."""
        stream = torch.Generator().manual_seed(_stream_seed(self.seed, 0, epoch) ^ _SHARD_ORDER_SALT)
        order = torch.randperm(len(self.counts), generator=stream).tolist()
        return order[self.rank::self.world_size]

    def share(self, epoch: int) -> int:
        """How many images this rank reads in epoch ``epoch``."""
        return sum(self.counts[number] for number in self.shard_order(epoch))

    def row_order(self, epoch: int, number: int) -> torch.Tensor:
        """Shard ``number``'s rows (0..count-1) in the order epoch ``epoch`` reads them (not
        to be modified, as :meth:`shard_order`)."""
        stream = torch.Generator().manual_seed(
            _stream_seed(self.seed, number, epoch) ^ _ROW_ORDER_SALT)
        return torch.randperm(self.counts[number], generator=stream)

    def locate(self, position: int) -> tuple[int, int]:
        """(epoch, offset in that epoch's share) of stream position ``position``."""
        while self._epoch_starts[-1] <= position:
            self._epoch_starts.append(self._epoch_starts[-1] + self.share(len(self._epoch_starts) - 1))
        epoch = bisect.bisect_right(self._epoch_starts, position) - 1
        return epoch, position - self._epoch_starts[epoch]

    def take(self, position: int, count: int) -> list[tuple[int, torch.Tensor]]:
        """Positions ``position .. position + count - 1`` as (shard number, rows within
        the shard) pieces, in stream order."""
        pieces: list[tuple[int, torch.Tensor]] = []
        while count > 0:
            epoch, offset = self.locate(position)
            for number in self.shard_order(epoch):
                if offset >= self.counts[number]:
                    offset -= self.counts[number]
                    continue
                rows = self.row_order(epoch, number)[offset:offset + count]
                pieces.append((number, rows))
                position, count, offset = position + len(rows), count - len(rows), 0
                if count == 0:
                    break
        return pieces

    def next_shard(self, position: int) -> int:
        """The shard this rank reads after the one holding stream position ``position``."""
        epoch, offset = self.locate(position)
        order = self.shard_order(epoch)
        for index, number in enumerate(order):
            if offset < self.counts[number]:
                return order[index + 1] if index + 1 < len(order) else self.shard_order(epoch + 1)[0]
            offset -= self.counts[number]
        raise AssertionError("position beyond its epoch")  # locate() makes this unreachable


class ShardCache:
    """The last ``capacity`` shards read, and one fetched ahead in a background thread."""

    def __init__(self, images: ShardedImages, capacity: int = 2) -> None:
        self.images, self.capacity = images, max(1, capacity)
        self.store = Store(images.location)
        self._shards: OrderedDict[int, Future] = OrderedDict()
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-shards")

    def _future(self, number: int) -> Future:
        if number in self._shards:
            self._shards.move_to_end(number)
        else:
            self._shards[number] = self._fetcher.submit(self.images.read_shard, number, self.store)
            while len(self._shards) > self.capacity + 1:  # + 1: the one being fetched ahead
                self._shards.popitem(last=False)
        return self._shards[number]

    def get(self, number: int) -> torch.Tensor:
        return self._future(number).result()

    def prefetch(self, number: int) -> None:
        self._future(number)

    def close(self) -> None:
        self._fetcher.shutdown(wait=False, cancel_futures=True)
        self._shards.clear()


class StreamedBatches(Batches):
    """:class:`~atelier.core.training.batches.Batches` over a sharded split: the same
    per-step draws (flips, latents, augmentation, noise), the real images streamed from
    this rank's shards (:class:`ShardStream`) through a :class:`ShardCache`."""

    def __init__(self, images: ShardedImages, labels: torch.Tensor | None, rank: int,
                 world_size: int, device: torch.device, config: TrainingConfig,
                 memory_format: torch.memory_format, cache_shards: int = 2) -> None:
        self.sharded = images
        self.shard_stream = ShardStream(images, config.seed, rank, world_size)
        self.cache = ShardCache(images, cache_shards)
        self.all_labels = labels  # the whole split's (int64, 8 bytes per image)
        self.labels = labels
        self.rank, self.world_size = rank, world_size
        self._set_streams(device, memory_format, config, world_size)

    def _data_device(self) -> torch.device:
        return torch.device("cpu")

    def __len__(self) -> int:
        return self.shard_stream.share(0)

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        start = (step - 1) * self.batch
        images, rows = [], []
        for number, local in self.shard_stream.take(start, self.batch):
            images.append(self.cache.get(number)[local])
            rows.append(local + self.shard_stream.starts[number])
        self.cache.prefetch(self.shard_stream.next_shard(start + self.batch - 1))
        real = torch.cat(images)
        if self.device.type == "cuda":
            real = real.pin_memory()
        rows = torch.cat(rows)
        return real, None if self.all_labels is None else self.all_labels[rows]

    def rows(self, step: int) -> torch.Tensor:
        """The split's row numbers step ``step`` reads on this rank (for tests and audits)."""
        pieces = self.shard_stream.take((step - 1) * self.batch, self.batch)
        return torch.cat([local + self.shard_stream.starts[number] for number, local in pieces])

    def position(self, step: int) -> dict[str, int | str]:
        epoch, offset = self.shard_stream.locate(step * self.batch)
        return {"epoch": epoch, "offset": offset, "images_per_epoch": self.shard_stream.share(epoch),
                "world_size": self.world_size, "source": f"shards:{self.sharded.identity()}"}

    def close(self) -> None:
        self.cache.close()


def make_batches(images: torch.Tensor | ShardedImages, labels: torch.Tensor | None, rank: int,
             world_size: int, device: torch.device, config: TrainingConfig,
             memory_format: torch.memory_format,
             resumed: tuple[dict | None, int] = (None, 0)) -> Batches:
    """The tensor on the device (:class:`Batches`), or this rank's stream of shards; with
    ``resumed`` (the checkpoint's data position, its step) checked by :func:`check_position`."""
    kind = StreamedBatches if isinstance(images, ShardedImages) else Batches
    batches = kind(images, labels, rank, world_size, device, config, memory_format)
    check_position(*resumed, batches)
    return batches


def check_position(position: dict | None, step: int, batches: Batches) -> None:
    """A resumed run's data stream must stand where the checkpoint's stood: on the same
    data and world size exactly; on another world size it is re-dealt (a warning says so)."""
    if position is None or batches.rank != 0:
        return
    now = batches.position(step)
    if position.get("world_size") != now["world_size"] or position.get("source") != now["source"]:
        log.warning("Resuming at step %d with %s training processes on %s; the checkpoint was "
                    "written with %s on %s. The data order of the epoch in progress is dealt "
                    "anew, so this run will not be bit-identical to an uninterrupted one.",
                    step, now["world_size"], now["source"], position.get("world_size"),
                    position.get("source"))
    elif position != now:
        raise CheckpointMismatchError(
            f"The checkpoint's data position {position} differs from this run's {now} at step "
            f"{step}: the training data changed under the same checkpoint key.")
