"""preprocessing with ``storage: shards``: the same images as the tensor path, written as shards.

Every check compares the sharded dataset with what the tensor path (``storage: tensor``, one
process) makes of the same files: the shards of each split, concatenated, must be its
``images[~is_val]`` and ``images[is_val]`` byte for byte, and every other key of the primary
record must be equal. The slow tests do the same on a Dask ``LocalCluster`` and on an S3
server (moto).
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import (
    BIN,
    PROJECT_ROOT,
    _free_port,
    require_slow_marker,
    stop_process_group,
    test_env,
)
from image_cases import encode, gradient, write_image_cases
from test_preprocessing import INGESTION, lineage_of, preprocessing_params

from atelier.core.shards import INDEX_NAME, ShardedImages, ShardError, Store, read_index
from atelier.core.training import TrainingConfig, train_gan
from atelier.core.training.streaming import StreamedBatches
from atelier.errors import DataSourceError
from atelier.pipelines.data_ingestion.nodes import build_manifest, inspect_source
from atelier.pipelines.preprocessing.engines import SCHEDULER_VARIABLE
from atelier.pipelines.preprocessing.nodes import choose_storage, preprocess_images

# 3 MiB / 1000: three 32 x 32 greyscale images per shard, one RGB image. The cases keep 14
# images (10 train, 4 val), so each split has several shards and a shorter last one.
SHARD_MB = 0.003


@pytest.fixture(autouse=True)
def _no_scheduler_from_the_environment(monkeypatch):
    """Run where each test says (``cluster``), whatever the shell running pytest exports."""
    monkeypatch.delenv(SCHEDULER_VARIABLE, raising=False)


@pytest.fixture
def cases(tmp_path) -> tuple[pd.DataFrame, dict]:
    """Every image case ingested in-process: (manifest, lineage)."""
    write_image_cases(tmp_path / "in")
    ingestion = {**INGESTION, "source": str(tmp_path / "in"),
                 "extract_dir": str(tmp_path / "extracted")}
    manifest = build_manifest(inspect_source(ingestion))
    return manifest, lineage_of(manifest, ingestion)


def sharded_params(shards: str | Path, **overrides) -> dict:
    return preprocessing_params(**{"storage": "shards", "shards": str(shards),
                                   "shard_mb": SHARD_MB, **overrides})


def assert_same_record(one: dict, other: dict, apart_from: set[str]) -> None:
    """Every key of two primary records but ``apart_from``: the same keys, equal values."""
    assert one.keys() - apart_from == other.keys() - apart_from
    for key in other.keys() - apart_from:
        if isinstance(other[key], torch.Tensor):
            assert one[key].dtype == other[key].dtype, key
            assert torch.equal(one[key], other[key]), key
        else:
            assert one[key] == other[key], key


def assert_same_images(sharded: dict, tensor: dict) -> None:
    """``sharded`` (storage: shards) holds what ``tensor`` (storage: tensor) holds."""
    assert "images" not in sharded and set(sharded["shards"]) == {"location", "key", "index"}
    assert_same_record(sharded, tensor, apart_from={"shards", "images"})
    location, is_val = sharded["shards"]["location"], tensor["is_val"]
    assert sharded["shards"]["index"] == read_index(location)
    for split, rows in (("train", ~is_val), ("val", is_val)):
        images = ShardedImages.open(location, split)
        loaded = images.load()
        assert loaded.dtype == torch.uint8 and torch.equal(loaded, tensor["images"][rows]), split
        assert sharded["shards"]["index"]["splits"][split]["count"] == int(rows.sum())


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file under ``folder``: relative path -> (inode, mtime in ns). A rewrite, atomic
    (a new file renamed over the old one), changes the inode even within one clock tick."""
    return {str(path.relative_to(folder)): (path.stat().st_ino, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def store_writes(monkeypatch) -> list[str]:
    """The names every ``Store`` writes from now on, local or S3."""
    written, original = [], Store.write

    def write(self, name, data):
        written.append(name)
        return original(self, name, data)

    monkeypatch.setattr(Store, "write", write)
    return written


@pytest.mark.parametrize("channels", [1, 3])
def test_shards_hold_the_tensor_paths_images_split_by_split(cases, tmp_path, channels):
    manifest, lineage = cases
    tensor = preprocess_images(manifest, lineage, preprocessing_params(channels=channels))
    sharded = preprocess_images(manifest, lineage,
                                sharded_params(tmp_path / "shards", channels=channels))
    assert_same_images(sharded, tensor)
    shards = sharded["shards"]
    assert shards["location"] == f"{tmp_path / 'shards'}/{shards['key']}"
    assert shards["key"].startswith(tensor["data_hash"][:16])
    index = shards["index"]
    assert index["images_per_shard"] == {1: 3, 3: 1}[channels]
    assert (index["channels"], index["resolution"]) == (channels, 32)
    assert index["data_hash"] == tensor["data_hash"]
    counts = {1: {"train": [3, 3, 3, 1], "val": [3, 1]}, 3: {"train": [1] * 10, "val": [1] * 4}}
    for split, expected in counts[channels].items():
        assert [shard[1] for shard in index["splits"][split]["shards"]] == expected
    # Nothing else is left in the dataset's folder (no temporary file, no stray shard).
    written = set(files_under(Path(shards["location"])))
    assert written == {INDEX_NAME} | {name for split in ("train", "val")
                                      for name, _, _ in index["splits"][split]["shards"]}


def test_the_same_images_and_settings_reuse_the_shards_another_shard_mb_writes_anew(
        cases, tmp_path, caplog, store_writes):
    manifest, lineage = cases
    first = preprocess_images(manifest, lineage, sharded_params(tmp_path / "shards"))
    location = Path(first["shards"]["location"])
    before, wrote = files_under(location), list(store_writes)
    assert INDEX_NAME in before and wrote[-1] == INDEX_NAME  # the index is written last
    store_writes.clear()
    with caplog.at_level(logging.INFO):
        again = preprocess_images(manifest, lineage, sharded_params(tmp_path / "shards"))
    assert f"Reusing the sharded dataset at {location}" in caplog.text
    assert store_writes == [] and files_under(location) == before
    assert again["shards"] == first["shards"]

    other = preprocess_images(manifest, lineage,
                              sharded_params(tmp_path / "shards", shard_mb=0.002))
    assert other["shards"]["key"] != first["shards"]["key"]
    assert other["shards"]["location"] != first["shards"]["location"]
    assert other["shards"]["index"]["images_per_shard"] == 2
    assert files_under(location) == before  # the first dataset is left as it was
    for split in ("train", "val"):
        assert torch.equal(ShardedImages.open(other["shards"]["location"], split).load(),
                           ShardedImages.open(str(location), split).load())


def test_auto_storage_shards_above_the_threshold_only(cases, tmp_path, monkeypatch):
    manifest, lineage = cases
    monkeypatch.chdir(tmp_path)  # the default location is relative: data/03_primary/shards
    below = preprocess_images(manifest, lineage, preprocessing_params(storage="auto"))
    assert "images" in below and "shards" not in below  # 14 KiB of pixels, 4 GB default
    assert not (tmp_path / "data").exists()
    above = preprocess_images(manifest, lineage,
                              preprocessing_params(storage="auto", shards_above_gb=1e-9))
    assert above["shards"]["location"] == f"data/03_primary/shards/{above['shards']['key']}"
    assert_same_images(above, below)


@pytest.mark.parametrize(("count", "expected"), [(1000, "tensor"), (1001, "shards")])
def test_auto_storage_compares_the_pixel_bytes_with_shards_above_gb(count, expected):
    # 1000 images of 1 x 1000 x 1000 bytes are exactly 1 GB: not above it.
    params = {"storage": "auto", "shards_above_gb": 1}
    assert choose_storage(params, count, channels=1, resolution=1000) == expected
    assert choose_storage({"storage": "tensor"}, count, 1, 1000) == "tensor"
    assert choose_storage({"storage": "shards"}, count, 1, 1000) == "shards"


@pytest.mark.parametrize(("overrides", "environment", "message"), [
    ({"storage": "sharded"}, None,
     "preprocessing.storage must be tensor, shards or auto, not 'sharded'"),
    ({"storage": "shards", "cluster": "my-cluster"}, None,
     "preprocessing.cluster must be null, 'local' or a Dask scheduler address such as "
     "tcp://host:8786, not 'my-cluster'"),
    ({"storage": "shards"}, "localhost",
     "a Dask scheduler address such as tcp://host:8786, not 'localhost'"),
], ids=["storage", "cluster", "scheduler-variable"])
def test_bad_storage_or_cluster_values_are_refused_before_anything_is_written(
        cases, tmp_path, monkeypatch, overrides, environment, message):
    manifest, lineage = cases
    if environment is not None:
        monkeypatch.setenv(SCHEDULER_VARIABLE, environment)
    with pytest.raises(ValueError, match=message):
        preprocess_images(manifest, lineage, sharded_params(tmp_path / "shards", **overrides))
    assert not (tmp_path / "shards").exists()


def test_a_file_changed_since_ingestion_is_refused_and_leaves_no_index(cases, tmp_path):
    manifest, lineage = cases
    changed = tmp_path / "in" / "modes" / "gray.png"
    original = changed.read_bytes()
    changed.write_bytes(encode(gradient(40, 40)))
    with pytest.raises(DataSourceError, match="1 files changed since ingestion.*modes/gray.png"):
        preprocess_images(manifest, lineage, sharded_params(tmp_path / "shards"))
    # Shards may have been written, but without an index nothing reads them as a dataset.
    assert list((tmp_path / "shards").rglob(INDEX_NAME)) == []
    (location,) = (tmp_path / "shards").iterdir()
    with pytest.raises(ShardError, match="did not finish"):
        ShardedImages.open(location, "train")
    # With the file as ingested, the same folder is written whole (not taken as done).
    changed.write_bytes(original)
    sharded = preprocess_images(manifest, lineage, sharded_params(tmp_path / "shards"))
    assert sharded["shards"]["location"] == str(location)
    assert_same_images(sharded, preprocess_images(manifest, lineage, preprocessing_params()))


@pytest.mark.slow
def test_a_dask_cluster_writes_the_same_shards_and_tensor_as_one_process(cases, tmp_path, caplog):
    manifest, lineage = cases
    tensor = preprocess_images(manifest, lineage, preprocessing_params())
    here = preprocess_images(manifest, lineage, sharded_params(tmp_path / "here"))
    with caplog.at_level(logging.INFO):
        on_dask = preprocess_images(manifest, lineage, sharded_params(
            tmp_path / "dask", cluster="local", workers=2))
    assert "(2 workers)" in caplog.text  # it did run on the cluster
    assert_same_images(on_dask, tensor)
    # The same record, index and shard files as one process; only the base folder differs.
    assert_same_record(on_dask, here, apart_from={"shards"})
    assert on_dask["shards"]["key"] == here["shards"]["key"]
    assert on_dask["shards"]["index"] == here["shards"]["index"]
    dask_folder, here_folder = Path(on_dask["shards"]["location"]), Path(here["shards"]["location"])
    assert set(files_under(dask_folder)) == set(files_under(here_folder))
    for name in files_under(here_folder):
        assert (dask_folder / name).read_bytes() == (here_folder / name).read_bytes(), name

    tensor_on_dask = preprocess_images(manifest, lineage,
                                       preprocessing_params(cluster="local", workers=2))
    assert_same_record(tensor_on_dask, tensor, apart_from=set())


@pytest.mark.slow
def test_a_running_dask_cluster_is_joined_by_its_address_from_the_environment(
        cases, tmp_path, monkeypatch, caplog):
    """``dask scheduler`` and ``dask worker`` started apart, as on a real cluster;
    ``ATELIER_DASK_SCHEDULER`` sends preprocessing there (over ``preprocessing.cluster``)."""
    require_slow_marker("a Dask scheduler and worker")
    manifest, lineage = cases
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask.log"
    with open(logs, "w") as log:
        processes = [subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=test_env(),
                                      start_new_session=True, cwd=tmp_path) for command in (
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard"],
            [str(BIN / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
             "--no-dashboard"])]
        try:
            monkeypatch.setenv(SCHEDULER_VARIABLE, address)
            with caplog.at_level(logging.INFO):
                joined = preprocess_images(manifest, lineage, sharded_params(
                    tmp_path / "joined", cluster="local"))  # the variable wins
        finally:
            for process in processes:
                stop_process_group(process)
    assert f"Preprocessing on Dask at {address}" in caplog.text, logs.read_text()[-3000:]
    monkeypatch.delenv(SCHEDULER_VARIABLE)
    here = preprocess_images(manifest, lineage, sharded_params(tmp_path / "here"))
    assert_same_record(joined, here, apart_from={"shards"})
    assert joined["shards"]["index"] == here["shards"]["index"]


@pytest.mark.slow
def test_shards_on_s3_read_back_as_the_tensor_paths_images_and_are_reused(
        cases, tmp_path, monkeypatch, caplog, store_writes):
    from team_stack import BUCKET, S3_CREDENTIALS, s3_server

    manifest, lineage = cases
    tensor = preprocess_images(manifest, lineage, preprocessing_params())
    with s3_server(tmp_path) as url:
        for name, value in S3_CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)  # the first would win over ours
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        sharded = preprocess_images(manifest, lineage, sharded_params(f"s3://{BUCKET}/shards"))
        key = sharded["shards"]["key"]
        assert sharded["shards"]["location"] == f"s3://{BUCKET}/shards/{key}"
        assert_same_images(sharded, tensor)

        import boto3

        client = boto3.client("s3", endpoint_url=url,
                              region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
                              aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

        def objects() -> dict[str, tuple]:
            listed = client.list_objects_v2(Bucket=BUCKET, Prefix="shards/")
            return {item["Key"]: (item["Size"], item["ETag"], item["LastModified"])
                    for item in listed.get("Contents", [])}

        stored = objects()
        index = sharded["shards"]["index"]
        assert set(stored) == {f"shards/{key}/{INDEX_NAME}"} | {
            f"shards/{key}/{name}" for split in ("train", "val")
            for name, _, _ in index["splits"][split]["shards"]}

        store_writes.clear()
        with caplog.at_level(logging.INFO):
            again = preprocess_images(manifest, lineage, sharded_params(f"s3://{BUCKET}/shards"))
        assert f"Reusing the sharded dataset at s3://{BUCKET}/shards/{key}" in caplog.text
        assert store_writes == [] and objects() == stored
        assert again["shards"] == sharded["shards"]

        # Training streams its share straight from the bucket (through the shard cache's
        # fetch thread), and sees exactly the shards' pixels.
        train = ShardedImages.from_index(sharded["shards"]["location"], index, "train")
        params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())
        config = TrainingConfig.from_params({
            **params["training"], "device": "cpu", "max_steps": 3, "batch_size": 2, "flip": False,
            "latent_dim": 8, "g_width": 4, "d_width": 4, "log_every": 1, "sample_every": 0,
            "checkpoint_every": 0, "checkpoint_dir": str(tmp_path / "checkpoints"),
            "precision": "fp32", "eval_every": 0})
        batches = StreamedBatches(train, None, 0, 1, torch.device("cpu"), config,
                                  torch.contiguous_format)
        real, _, _ = batches.draw(1)
        expected = tensor["images"][~tensor["is_val"]][batches.rows(1)]
        assert torch.equal(real, expected.float().div(127.5).sub(1))
        batches.close()
        assert train_gan(train, config, data_hash=sharded["data_hash"]).step == 3
