"""atelier.core.storage: atomic writes and the dataset's identity, ``data_hash``."""

from __future__ import annotations

import pytest

from atelier.core.storage import dataset_hash, write_atomically


def test_dataset_hash_names_the_files_and_their_bytes_not_their_order():
    paths, shas = ["a/1.png", "b/2.png"], ["1" * 64, "2" * 64]
    base = dataset_hash(paths, shas)
    assert base == dataset_hash(paths[::-1], shas[::-1])  # a set of (path, bytes) pairs
    assert len(base) == 64
    others = {
        dataset_hash(["a/1.png", "b/3.png"], shas),  # renamed
        dataset_hash(paths, ["1" * 64, "3" * 64]),  # edited
        dataset_hash(paths[:1], shas[:1]),  # removed
        dataset_hash([*paths, "c.png"], [*shas, "4" * 64]),  # added
    }
    assert base not in others and len(others) == 4


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def fail(handle):
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
