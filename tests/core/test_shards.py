"""atelier.core.shards: the shard format, its checks on read, and reading rows across shards.

Datasets here are written with the module's own writers (``write_shard``, ``write_index``)
into a temporary folder; what they must give back is compared with the numpy array they
were written from, never with another read of the same files.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from atelier.core import shards
from atelier.core.shards import (
    INDEX_NAME,
    SHARD_FORMAT,
    ShardedImages,
    ShardError,
    Store,
    decode_shard,
    encode_shard,
    images_per_shard,
    read_index,
    shard_key,
    split_slices,
    write_index,
    write_shard,
)

CHANNELS, RESOLUTION = 3, 4


def pixels(count: int, seed: int = 0) -> np.ndarray:
    """``count`` distinct random uint8 images (C x H x W = 3 x 4 x 4)."""
    return np.random.default_rng(seed).integers(0, 256, (count, CHANNELS, RESOLUTION, RESOLUTION),
                                                dtype=np.uint8)


def write_dataset(location: Path, splits: dict[str, np.ndarray], per_shard: int) -> str:
    """Write ``splits`` (split name -> images) as shards of ``per_shard`` plus the index, the
    way preprocessing does; returns the location as a string."""
    where = str(location)
    index_splits = {}
    for split, images in splits.items():
        entries = [write_shard(where, split, number, images[part])
                   for number, part in enumerate(split_slices(len(images), per_shard))]
        index_splits[split] = {"count": len(images), "shards": entries}
    write_index(where, {"channels": CHANNELS, "resolution": RESOLUTION, "splits": index_splits})
    return where


@pytest.fixture
def ten(tmp_path):
    """A dataset whose train split is 10 images in shards of 3, 3, 3, 1 (val: 2 in one)."""
    train, val = pixels(10), pixels(2, seed=1)
    location = write_dataset(tmp_path / "data", {"train": train, "val": val}, per_shard=3)
    return location, train, val


# ------------------------------------------------------------------------- the format


def test_a_shard_is_its_pixels_as_npy_bytes_the_same_every_time():
    images = pixels(5)
    data = encode_shard(images)
    assert data == encode_shard(images.copy())
    # A strided view of the same pixels (here: flipped, not C-contiguous) gives the same bytes.
    flipped = images[:, :, ::-1]
    assert not flipped.flags["C_CONTIGUOUS"]
    assert encode_shard(flipped) == encode_shard(np.ascontiguousarray(flipped))
    assert data != encode_shard(pixels(5, seed=2))
    decoded = decode_shard(data, "x.npy", hashlib.sha256(data).hexdigest())
    assert decoded.dtype == torch.uint8 and decoded.shape == (5, CHANNELS, RESOLUTION, RESOLUTION)
    assert np.array_equal(decoded.numpy(), images)
    # The bytes are plain .npy: numpy reads them without Atelier.
    assert data[:6] == b"\x93NUMPY"


@pytest.mark.parametrize("images", [pixels(2).astype(np.float32), pixels(2)[0]],
                         ids=["float32", "three-dimensional"])
def test_only_uint8_n_c_h_w_is_a_shard(images):
    with pytest.raises(ValueError, match="uint8 n x C x H x W"):
        encode_shard(images)


def test_shard_bytes_that_are_not_npy_are_refused_by_name():
    with pytest.raises(ShardError, match=r"Shard val/shard-00003\.npy is not a readable \.npy"):
        decode_shard(b"this is not a numpy file at all", "val/shard-00003.npy")


def test_write_shard_returns_the_index_entry_of_what_it_wrote(tmp_path):
    images = pixels(4)
    entry = write_shard(str(tmp_path), "val", 7, images)
    data = (tmp_path / "val" / "shard-00007.npy").read_bytes()
    assert entry == ["val/shard-00007.npy", 4, hashlib.sha256(data).hexdigest()]
    assert data == encode_shard(images)
    # Written atomically: no temporary file is left next to it.
    assert [p.name for p in (tmp_path / "val").iterdir()] == ["shard-00007.npy"]


# ------------------------------------------------------------------------- checks on read


def test_a_flipped_byte_in_a_shard_is_refused_naming_the_file(ten):
    location, train, _ = ten
    shard_file = Path(location) / "train" / "shard-00001.npy"
    data = bytearray(shard_file.read_bytes())
    data[-1] ^= 0x01  # one bit of the last pixel: still a valid .npy, other pixels
    shard_file.write_bytes(bytes(data))
    split = ShardedImages.open(location, "train")
    message = re.escape(f"Shard {location}/train/shard-00001.npy does not match its index")
    with pytest.raises(ShardError, match=message):
        split.load()
    with pytest.raises(ShardError, match=message):
        split.take([4])
    # The other shards are still read (and checked) one by one.
    assert np.array_equal(split.take([0, 9]).numpy(), train[[0, 9]])


def test_a_shard_holding_other_than_its_index_says_is_refused(ten, tmp_path):
    location, _, _ = ten
    index = read_index(location)
    index["splits"]["train"]["shards"][0][1] = 2  # the file holds 3 images, its hash is right
    split = ShardedImages.from_index(location, index, "train")
    with pytest.raises(ShardError, match=r"shard-00000\.npy holds \(3, 3, 4, 4\), its index "
                                         r"says 2 images"):
        split.read_shard(0)


def test_a_missing_shard_file_says_the_dataset_is_incomplete(ten):
    location, _, _ = ten
    (Path(location) / "val" / "shard-00000.npy").unlink()
    with pytest.raises(ShardError, match=r"val/shard-00000\.npy does not exist: the sharded "
                                         r"dataset is incomplete.*preprocessing"):
        ShardedImages.open(location, "val").load()


def test_without_index_json_the_preprocessing_did_not_finish(ten):
    location, _, _ = ten
    (Path(location) / INDEX_NAME).unlink()
    with pytest.raises(ShardError, match="index.json is missing.*did not finish"):
        ShardedImages.open(location, "train")
    with pytest.raises(ShardError, match="did not finish"):
        read_index(Path(location).parent / "never-written")


def test_another_shard_format_is_refused(ten):
    location, _, _ = ten
    index_file = Path(location) / INDEX_NAME
    index = json.loads(index_file.read_text())
    assert index["format"] == SHARD_FORMAT
    index_file.write_text(json.dumps({**index, "format": SHARD_FORMAT + 1}))
    with pytest.raises(ShardError, match=f"holds shard format {SHARD_FORMAT + 1}; this Atelier "
                                         f"reads format {SHARD_FORMAT}.*preprocessing"):
        read_index(location)
    del index["format"]  # an index from before formats were numbered
    index_file.write_text(json.dumps(index))
    with pytest.raises(ShardError, match="holds shard format None"):
        ShardedImages.open(location, "train")


def test_a_split_the_index_lacks_is_refused(tmp_path):
    location = write_dataset(tmp_path, {"train": pixels(2)}, per_shard=3)
    with pytest.raises(ShardError, match=r"has no 'val' split \(it has \['train'\]\)"):
        ShardedImages.open(location, "val")


# ------------------------------------------------------------------------- reading rows


def test_open_describes_the_split(ten):
    location, train, val = ten
    split = ShardedImages.open(location + "/", "train")  # a trailing slash is the same place
    assert split.location == location and split.split == "train"
    assert [shard.count for shard in split.shards] == [3, 3, 3, 1]
    assert len(split) == 10 and split.shape == (10, CHANNELS, RESOLUTION, RESOLUTION)
    assert split.starts() == [0, 3, 6, 9]
    assert split.bytes_per_image == CHANNELS * RESOLUTION * RESOLUTION
    assert np.array_equal(split.load().numpy(), train)
    assert np.array_equal(ShardedImages.open(location, "val").load().numpy(), val)
    # identity names the rows: the same shards give the same one, the other split another.
    assert split.identity() == ShardedImages.open(location, "train").identity()
    assert split.identity() != ShardedImages.open(location, "val").identity()


def test_take_returns_the_rows_in_the_order_asked_reading_each_shard_once(ten, monkeypatch):
    location, train, _ = ten
    split = ShardedImages.open(location, "train")
    reads, original = [], Store.read

    def counted(self, name):
        reads.append(name)
        return original(self, name)

    monkeypatch.setattr(Store, "read", counted)
    rows = [9, 0, 4, 3, 2, 7, 4, 5, 6]  # every shard boundary, out of order, one row twice
    taken = split.take(rows)
    assert taken.dtype == torch.uint8 and np.array_equal(taken.numpy(), train[rows])
    assert sorted(reads) == [f"train/shard-0000{n}.npy" for n in range(4)]
    reads.clear()
    assert np.array_equal(split.take(torch.tensor([5, 3])).numpy(), train[[5, 3]])
    assert reads == ["train/shard-00001.npy"]  # only the shard the rows are in
    assert split.take([]).shape == (0, CHANNELS, RESOLUTION, RESOLUTION)


@pytest.mark.parametrize("rows", [[10], [-1], [0, 10]])
def test_take_refuses_rows_outside_the_split(ten, rows):
    location, _, _ = ten
    with pytest.raises(IndexError, match=r"Rows outside 0\.\.9"):
        ShardedImages.open(location, "train").take(rows)


@pytest.mark.parametrize(("batch_size", "sizes"), [
    (4, [4, 4, 2]),      # batches across shard boundaries
    (3, [3, 3, 3, 1]),   # batches that are the shards
    (1, [1] * 10),
    (10, [10]),
    (25, [10]),          # more than the split: one short batch
])
def test_batches_give_every_row_in_order_in_batches_of_the_size_asked(ten, batch_size, sizes):
    location, train, _ = ten
    batches = list(ShardedImages.open(location, "train").batches(batch_size))
    assert [len(batch) for batch in batches] == sizes
    assert np.array_equal(torch.cat(batches).numpy(), train)


def test_batches_refuse_a_batch_size_below_one(ten):
    location, _, _ = ten
    with pytest.raises(ValueError):
        next(ShardedImages.open(location, "train").batches(0))


def test_an_empty_split_loads_as_no_images(tmp_path):
    location = write_dataset(tmp_path, {"train": pixels(2), "val": pixels(0)}, per_shard=3)
    val = ShardedImages.open(location, "val")
    assert len(val) == 0 and val.shards == ()
    assert val.load().shape == (0, CHANNELS, RESOLUTION, RESOLUTION)
    assert list(val.batches(4)) == []


# ------------------------------------------------------------------------- sizes and keys


@pytest.mark.parametrize(("shard_mb", "channels", "resolution", "expected"), [
    (64, 3, 64, 5461),       # 64 MiB / (3 x 64 x 64 bytes) = 5461.33
    (64, 1, 32, 65536),      # exactly divisible
    (0.003, 1, 32, 3),       # 3145 bytes of 1024-byte images
    (0.5, 3, 256, 2),        # 524288 / 196608 = 2.67
    (0.001, 3, 256, 1),      # smaller than one image: still one per shard
])
def test_images_per_shard(shard_mb, channels, resolution, expected):
    assert images_per_shard(shard_mb, channels, resolution) == expected


@pytest.mark.parametrize("shard_mb", [0, -1, -0.5, float("nan")])
def test_images_per_shard_refuses_a_size_that_is_not_positive(shard_mb):
    with pytest.raises(ValueError, match="preprocessing.shard_mb must be positive"):
        images_per_shard(shard_mb, 3, 64)


def test_split_slices_cut_consecutive_rows_the_last_slice_shorter():
    assert split_slices(10, 3) == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 10)]
    assert split_slices(9, 3) == [slice(0, 3), slice(3, 6), slice(6, 9)]
    assert split_slices(2, 5) == [slice(0, 2)]
    assert split_slices(0, 5) == []
    rows = np.arange(1000)
    assert np.array_equal(np.concatenate([rows[part] for part in split_slices(1000, 64)]), rows)


PARAMS = {"val_fraction": 0.2, "allow_upscale": False, "shard_mb": 64.0, "resolution": 64,
          "channels": 3}


def test_shard_key_names_the_data_and_every_parameter():
    data_hash = "ab" * 32
    key = shard_key(data_hash, PARAMS)
    assert re.fullmatch(r"abababababababab-[0-9a-f]{12}", key)
    assert key == shard_key(data_hash, dict(reversed(PARAMS.items())))  # order does not matter
    assert shard_key("cd" * 32, PARAMS) != key
    changed = {name: shard_key(data_hash, {**PARAMS, name: value}) for name, value in
               {"val_fraction": 0.25, "allow_upscale": True, "shard_mb": 32.0,
                "resolution": 128, "channels": 1}.items()}
    assert key not in changed.values() and len(set(changed.values())) == len(changed)
    assert shard_key(data_hash, {**PARAMS, "workers": 4}) != key  # any parameter passed


def test_shard_key_changes_with_the_format(monkeypatch):
    key = shard_key("ab" * 32, PARAMS)
    monkeypatch.setattr(shards, "SHARD_FORMAT", SHARD_FORMAT + 1)
    assert shard_key("ab" * 32, PARAMS) != key


# ------------------------------------------------------------------------- where


@pytest.mark.parametrize("location", ["gs://bucket/shards", "http://example.com/shards",
                                      "hdfs://namenode/shards"])
def test_a_remote_location_other_than_s3_is_refused_saying_what_is_accepted(location):
    message = re.escape(f"Shards go to a folder or to s3://bucket/prefix, not {location!r}")
    with pytest.raises(ShardError, match=message):
        Store(location)
    with pytest.raises(ShardError, match=message):
        ShardedImages.open(location)
    with pytest.raises(ShardError, match=message):
        write_shard(location, "train", 0, pixels(1))


def test_a_local_store_reads_what_it_wrote_and_names_what_is_missing(tmp_path):
    store = Store(tmp_path / "nested" / "folder")
    assert not store.exists("a/b.bin")
    store.write("a/b.bin", b"bytes")
    assert store.exists("a/b.bin") and store.read("a/b.bin") == b"bytes"
    store.write("a/b.bin", b"new")
    assert store.read("a/b.bin") == b"new"
    with pytest.raises(ShardError, match=r"nested/folder/a/c\.bin does not exist"):
        store.read("a/c.bin")


def test_an_unwritable_location_is_refused_by_the_probe_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ShardError, match=r"Cannot write .*a-file/sub/\.atelier-write-check"):
        Store(blocker / "sub").check_writable()
    Store(tmp_path / "fine").check_writable()  # a writable folder: no probe left behind
    assert list((tmp_path / "fine").iterdir()) == []
