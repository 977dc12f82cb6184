"""atelier.core.training.streaming: training from shards, each rank its own share."""

from __future__ import annotations

import contextlib
import queue as queues
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from training_cases import (  # noqa: F401 (one_thread: an autouse fixture)
    DATA_HASH,
    JOB,
    assert_identical,
    free_port,
    job_weights,
    one_thread,
    synthetic_images,
    tiny_params,
)

from atelier.core.shards import ShardedImages, split_slices, write_index, write_shard
from atelier.core.training import TrainingConfig, train_gan
from atelier.core.training.streaming import ShardStream, StreamedBatches


def write_shards(folder, images: torch.Tensor, per_shard: int) -> ShardedImages:
    """``images`` as the training split of a sharded dataset in ``folder``."""
    entries = [write_shard(str(folder), "train", number, images[part].numpy())
               for number, part in enumerate(split_slices(len(images), per_shard))]
    write_index(str(folder), {"channels": images.shape[1], "resolution": images.shape[2],
                              "splits": {"train": {"count": len(images), "shards": entries}}})
    return ShardedImages.open(folder, "train")


def epoch_rows(stream: ShardStream, epoch: int) -> list[int]:
    start = sum(stream.share(e) for e in range(epoch))
    pieces = stream.take(start, stream.share(epoch))
    return torch.cat([rows + stream.starts[number] for number, rows in pieces]).tolist()


def test_ranks_read_disjoint_shares_whose_union_is_the_split_every_epoch(tmp_path):
    sharded = write_shards(tmp_path, synthetic_images(47), per_shard=5)  # 10 shards, last of 2
    for world_size in (1, 2, 3):
        streams = [ShardStream(sharded, 7, rank, world_size) for rank in range(world_size)]
        for epoch in range(3):
            shares = [epoch_rows(stream, epoch) for stream in streams]
            everything = [row for share in shares for row in share]
            assert sorted(everything) == list(range(47)), (world_size, epoch)  # disjoint, whole
    # The order is the seed's: the same seed deals the same, another seed differently, and
    # every epoch is dealt anew.
    one, again, other = (ShardStream(sharded, seed, 0, 2) for seed in (7, 7, 8))
    assert epoch_rows(one, 0) == epoch_rows(again, 0) != epoch_rows(other, 0)
    assert epoch_rows(one, 0) != epoch_rows(one, 1)


def test_a_step_across_an_epoch_boundary_takes_the_next_epochs_first_rows(tmp_path):
    sharded = write_shards(tmp_path, synthetic_images(12), per_shard=4)
    stream = ShardStream(sharded, 0, 0, 1)
    pieces = stream.take(10, 4)  # positions 10, 11 (epoch 0) and 12, 13 (epoch 1)
    rows = torch.cat([rows + stream.starts[number] for number, rows in pieces]).tolist()
    assert rows == epoch_rows(stream, 0)[10:] + epoch_rows(stream, 1)[:2]
    assert stream.locate(13) == (1, 1)


def test_more_processes_than_shards_is_refused_naming_the_fix(tmp_path):
    sharded = write_shards(tmp_path, synthetic_images(8), per_shard=8)
    with pytest.raises(ValueError, match="Lower preprocessing.shard_mb"):
        ShardStream(sharded, 0, 0, 2)


def test_streamed_batches_hold_a_few_shards_and_give_the_stream_rows_pixels(tmp_path):
    images = synthetic_images(40)
    sharded = write_shards(tmp_path, images, per_shard=4)
    labels = torch.arange(40) % 3
    config = TrainingConfig.from_params(tiny_params(tmp_path, flip=False, conditional=True))
    batches = StreamedBatches(sharded, labels, 0, 1, torch.device("cpu"), config,
                              torch.contiguous_format, cache_shards=2)
    for step in range(1, 21):  # four epochs
        real, batch_labels, _ = batches.draw(step)
        rows = batches.rows(step)
        expected = images[rows].float().div(127.5).sub(1)
        assert torch.equal(real, expected) and torch.equal(batch_labels, labels[rows])
        assert len(batches.cache._shards) <= 3  # two kept and one fetched ahead
    assert batches.position(20) == {"epoch": 4, "offset": 0, "images_per_epoch": 40,
                                    "world_size": 1, "source": f"shards:{sharded.identity()}"}
    batches.close()


def test_a_checkpoint_records_the_data_position_and_a_reshuffled_resume_says_so(tmp_path, caplog):
    sharded = write_shards(tmp_path / "a", synthetic_images(48), per_shard=8)
    params = tiny_params(tmp_path, max_steps=4, checkpoint_every=4)
    train_gan(sharded, TrainingConfig.from_params(params), data_hash=DATA_HASH)
    checkpoint = torch.load(next((tmp_path / "checkpoints").glob("*/step_*.pt")), weights_only=True)
    assert checkpoint["data_position"] == {"epoch": 0, "offset": 32, "images_per_epoch": 48,
                                           "world_size": 1, "source": f"shards:{sharded.identity()}"}
    # The same images in other shards (another shard_mb) resume under the same key, but the
    # epoch in progress is dealt anew: the run says it will not be bit-identical.
    resharded = write_shards(tmp_path / "b", synthetic_images(48), per_shard=6)
    result = train_gan(resharded, TrainingConfig.from_params({**params, "max_steps": 6}),
                       data_hash=DATA_HASH)
    assert result.resumed_from is not None and result.step == 6
    assert "will not be bit-identical" in caplog.text and resharded.identity() in caplog.text


def _read_an_epoch(rank: int, world_size: int, port: int, folder: str, queue) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        sharded = ShardedImages.open(folder, "train")
        config = TrainingConfig.from_params(tiny_params(Path(folder), batch_size=4 * world_size))
        batches = StreamedBatches(sharded, None, dist.get_rank(), dist.get_world_size(),
                                  torch.device("cpu"), config, torch.contiguous_format)
        steps = batches.shard_stream.share(0) // batches.batch
        rows = torch.cat([batches.rows(step) for step in range(1, steps + 1)])
        pixels = torch.cat([batches._batch(step)[0] for step in range(1, steps + 1)])
        gathered = [None] * world_size
        dist.all_gather_object(gathered, (rows.tolist(), pixels.numpy()))
        if rank == 0:
            queue.put(gathered)
        batches.close()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_stream_disjoint_shares_whose_union_is_the_split(tmp_path):
    images = synthetic_images(48)
    write_shards(tmp_path, images, per_shard=4)  # 12 shards: 6 per rank, 24 images each
    context = mp.get_context("spawn")
    queue, port = context.Queue(), free_port()
    ranks = [context.Process(target=_read_an_epoch, args=(rank, 2, port, str(tmp_path), queue))
             for rank in range(2)]
    for process in ranks:
        process.start()
    gathered = None
    while gathered is None and any(process.is_alive() for process in ranks):
        with contextlib.suppress(queues.Empty):
            gathered = queue.get(timeout=2)
    for process in ranks:
        process.join(timeout=60)
    assert [process.exitcode for process in ranks] == [0, 0]
    (rows0, pixels0), (rows1, pixels1) = gathered
    assert len(rows0) == len(rows1) == 24 and not set(rows0) & set(rows1)
    assert sorted(rows0 + rows1) == list(range(48))
    assert np.array_equal(pixels0, images[rows0].numpy()) and np.array_equal(pixels1, images[rows1].numpy())


def run_sharded_job(tmp_path, name: str, params: dict, *extra: str) -> subprocess.CompletedProcess:
    import json

    params_file = tmp_path / f"{name}.json"
    params_file.write_text(json.dumps(params))
    return subprocess.run(
        [sys.executable, str(JOB), str(params_file), str(tmp_path / "shards"),
         str(tmp_path / f"{name}.out.pt"), *extra], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sigkill_during_sharded_training_then_resume_equals_uninterrupted_run(tmp_path):
    write_shards(tmp_path / "shards", synthetic_images(44), per_shard=5)  # epochs end mid-step
    params = tiny_params(tmp_path, max_steps=12)
    uninterrupted = run_sharded_job(tmp_path, "uninterrupted",
                                    {**params, "checkpoint_dir": str(tmp_path / "other")})
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    killed = run_sharded_job(tmp_path, "killed", params, "--signal-at", "10", "--signal", "KILL")
    assert killed.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*/step_*.pt")) == [
        "step_00000004.pt", "step_00000008.pt"]
    resumed = run_sharded_job(tmp_path, "resumed", params)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming training from" in resumed.stderr and "step 8 of 12" in resumed.stderr
    assert_identical(job_weights(tmp_path, "uninterrupted"), job_weights(tmp_path, "resumed"))
    # The data order matters to the weights: the same run on the tensor path differs.
    tensor_run = train_gan(synthetic_images(44), TrainingConfig.from_params(
        {**params, "checkpoint_dir": str(tmp_path / "tensor")}), data_hash=DATA_HASH)
    assert not torch.equal(tensor_run.generator.state_dict()["main.0.weight"],
                           job_weights(tmp_path, "resumed")["main.0.weight"])
