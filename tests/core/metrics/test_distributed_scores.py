"""atelier.core.metrics.distributed: FID, IS and KID scored by the ranks of a gloo group
equal one process's scores.

The ranks are processes spawned here (``torch.multiprocessing``, spawn) into one gloo group
of three on a free local port. The group of three scores, then a group of two (global ranks
1 and 2, so that group ranks are not global ranks), both on 23 seeds and 17 reference
images, which neither divides. One spawn serves every test that needs ranks (the ``ranks``
fixture): on two cores, starting three Pythons with torch costs more than the scoring.

Inception is the session's stand-in (conftest's ``standin_torch_home``). One process and
the ranks run on one thread, in batches of one image, so that an image's features are the
same bytes everywhere: float32 kernels differ with the batch size (about 1e-6 on logits),
and the stand-in's IS std (about 1e-5) is a difference of near-equal numbers. So the
comparison sees only what distribution changes.
"""

from __future__ import annotations

import dataclasses
import datetime
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from digit_cases import digits
from torch import nn

from atelier.core.metrics import (
    SCORE_NAMES,
    WEIGHTS_FILENAME,
    EvaluationConfig,
    FIDInception,
    extract_features,
    feature_statistics,
    load_inception,
    reference_statistics_of_images,
    score_generator,
)
from atelier.core.metrics.distributed import (
    FeatureSums,
    distributed_features,
    distributed_reference_statistics,
    distributed_score_generator,
    interleave,
    rank_and_world_size,
    shard,
)
from atelier.core.models import build_generator

GENERATOR = {"resolution": 32, "channels": 1, "latent_dim": 16, "g_width": 8}
# 23 seeds: 12 + 11 on two ranks, 8 + 8 + 7 on three.
CONFIG = EvaluationConfig(num_samples=23, fid_dims=64, is_splits=3, kid_subsets=5,
                          kid_subset_size=10, batch_size=1, device="cpu",
                          reference_cache_dir=None)
REFERENCE_IMAGES = 17  # 9 + 8 on two ranks, 6 + 6 + 5 on three
# The global ranks of each group the spawned ranks score in, by the group's size.
GROUPS = {3: (0, 1, 2), 2: (1, 2)}


@dataclasses.dataclass(frozen=True)
class Setting:
    """What one process and every rank score: the same weights, generator and images."""

    weights: Path
    generator_state: dict[str, torch.Tensor]
    reference: torch.Tensor

    def generator(self) -> nn.Module:
        generator = build_generator(GENERATOR)
        generator.load_state_dict(self.generator_state)
        return generator


@pytest.fixture(scope="module")
def setting(standin_torch_home: Path) -> Setting:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        state = build_generator(GENERATOR).state_dict()
    return Setting(standin_torch_home / "hub" / "checkpoints" / WEIGHTS_FILENAME, state,
                   digits(range(REFERENCE_IMAGES)))


@pytest.fixture(scope="module")
def one_process(setting: Setting, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One process's scores (which write its reference cache) and reference statistics."""
    cache = tmp_path_factory.mktemp("one_process_cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        inception = load_inception(setting.weights, device="cpu")
        scores = score_generator(setting.generator(), setting.reference, inception,
                                 dataclasses.replace(CONFIG, reference_cache_dir=str(cache)))
        reference = reference_statistics_of_images(inception, setting.reference, CONFIG.fid_dims,
                                                   CONFIG.batch_size, cache)
    finally:
        torch.set_num_threads(threads)
    assert reference.cache_hit  # the statistics the scores used
    return {"scores": scores, "reference": reference, "cache": cache}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spawned_rank(rank: int, port: int, setting: Setting, one_process_cache: Path,
                  out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=len(GROUPS[3]), timeout=datetime.timedelta(minutes=2))
    try:
        groups = {3: None, 2: dist.new_group(list(GROUPS[2]))}  # every rank makes every group
        inception = load_inception(setting.weights, device="cpu")
        results = {size: _in_group(group, setting, inception, one_process_cache,
                                   out / f"cache-{size}")
                   for size, group in groups.items() if rank in GROUPS[size]}
        dist.barrier()  # rank 0 holds the group's store: it leaves last
    finally:
        dist.destroy_process_group()
    (out / f"rank{rank}.pkl").write_bytes(pickle.dumps(results))


def _in_group(group: dist.ProcessGroup | None, setting: Setting, inception: FIDInception,
              one_process_cache: Path, cache: Path) -> dict:
    """What one rank of ``group`` computes, for the tests to compare with one process."""
    group_rank, group_size = rank_and_world_size(group)
    generator = setting.generator()
    reference = distributed_reference_statistics(setting.reference, inception, CONFIG,
                                                 group=group)
    results = {
        "group_rank": group_rank,
        "group_size": group_size,
        "share": len(shard(setting.reference, group_rank, group_size)),
        "reference": reference,
        "cached": distributed_reference_statistics(
            setting.reference, inception,
            dataclasses.replace(CONFIG, reference_cache_dir=str(one_process_cache)),
            group=group),
        "scores": distributed_score_generator(
            generator, setting.reference, inception,
            dataclasses.replace(CONFIG, reference_cache_dir=str(cache)), group=group),
        # Fewer images than ranks: the third rank has none.
        "two_images": distributed_features(
            inception, shard(setting.reference[:2], group_rank, group_size).split(1),
            dims=CONFIG.fid_dims, group=group),
    }
    # A score that fails on rank 0 alone (the IS of 2 images in 3 splits): every rank raises.
    try:
        distributed_score_generator(generator, reference, inception, CONFIG, seeds=range(2),
                                    group=group)
    except (ValueError, RuntimeError) as error:
        results["failure"] = f"{type(error).__name__}: {error}"
    return results


@pytest.fixture(scope="module")
def ranks_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the ranks write their results and their reference caches (cache-<size>)."""
    return tmp_path_factory.mktemp("ranks")


@pytest.fixture(scope="module")
def ranks(setting: Setting, one_process: dict, ranks_out: Path) -> dict[int, list[dict]]:
    """Each group size's results, one dict per rank of the group, in group-rank order."""
    torch.multiprocessing.start_processes(
        _spawned_rank, args=(_free_port(), setting, one_process["cache"], ranks_out),
        nprocs=len(GROUPS[3]), join=True, start_method="spawn")
    results = [pickle.loads((ranks_out / f"rank{rank}.pkl").read_bytes()) for rank in GROUPS[3]]
    return {size: [results[rank][size] for rank in members] for size, members in GROUPS.items()}


# --- without processes ------------------------------------------------------------------------


@pytest.mark.parametrize("count", [23, 17, 2, 1, 0])
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_shard_and_interleave_invert_each_other(count, world_size):
    rows = np.arange(count * 2, dtype=np.float64).reshape(count, 2)
    shares = [shard(rows, rank, world_size) for rank in range(world_size)]
    assert sorted(len(share) for share in shares)[-1] - min(len(s) for s in shares) <= 1
    assert sum(len(share) for share in shares) == count
    np.testing.assert_array_equal(interleave(shares), rows)
    assert list(shard(range(100, 100 + count), 1 % world_size, world_size)) == list(
        range(100 + 1 % world_size, 100 + count, world_size))


def test_interleave_refuses_shares_that_are_not_strided():
    rows = np.arange(23.0)[:, None]
    with pytest.raises(ValueError, match="not its strided share"):
        interleave([rows[:10], rows[10:]])  # contiguous blocks of 10 and 13
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        shard(rows, 2, 2)


def test_feature_sums_give_numpy_mean_and_covariance():
    rng = np.random.default_rng(0)
    # Non-negative like pooled ReLU features, with a mean larger than their spread: the
    # case where S2 - n mu mu^T loses precision.
    features = rng.gamma(2.0, 0.2, size=(37, 64)) + 3.0
    sums = FeatureSums.zeros(64)
    for batch in np.array_split(features, [5, 6, 20]):  # batches of 5, 1, 14, 17
        sums.add(batch)
    assert sums.count == 37
    mu, sigma = sums.statistics()
    assert mu == pytest.approx(np.mean(features, axis=0), rel=1e-9)
    assert sigma == pytest.approx(np.cov(features, rowvar=False), rel=1e-9)
    alone = sums.all_reduce()  # no group: the sums themselves, a copy
    assert alone.count == 37 and alone.total is not sums.total
    np.testing.assert_array_equal(alone.cross, sums.cross)
    with pytest.raises(ValueError, match="N x 64"):
        sums.add(features[:, :8])
    single = FeatureSums.zeros(64)
    single.add(features[:1])
    with pytest.raises(ValueError, match="at least two images"):
        single.statistics()


# --- one process ------------------------------------------------------------------------------


@pytest.mark.slow  # builds the stand-in Inception (about 20 s), which the quick suite avoids
def test_without_a_group_or_in_a_group_of_one_it_is_score_generator(standin):
    generator, reference = build_generator(GENERATOR), digits(range(5))
    config = dataclasses.replace(CONFIG, num_samples=4, is_splits=2, batch_size=4)
    expected = score_generator(generator, reference, standin, config)
    assert rank_and_world_size() == (0, 1)
    assert distributed_score_generator(generator, reference, standin, config) == expected
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1)
    try:
        assert rank_and_world_size() == (0, 1)
        assert distributed_score_generator(generator, reference, standin, config) == expected
        gathered = distributed_features(standin, reference.split(4), dims=64)
    finally:
        dist.destroy_process_group()
    single = extract_features(standin, reference.split(4), dims=64)
    np.testing.assert_array_equal(gathered.features, single.features)
    assert gathered.logits is None
    mu, sigma = feature_statistics(single.features)
    np.testing.assert_array_equal(gathered.mu, mu)
    np.testing.assert_array_equal(gathered.sigma, sigma)


# --- ranks: a group of three and a group of two, spawned once (the ``ranks`` fixture) --------

OTHER_KEYS = ("num_samples", "num_reference", "dims", "inception_weights_sha256",
              "inception_weights_warning")


@pytest.mark.slow  # spawns three ranks, each running Inception (the ``ranks`` fixture)
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_score_as_one_process(ranks, one_process, world_size):
    expected = one_process["scores"]
    assert (expected["num_samples"], expected["num_reference"]) == (23, REFERENCE_IMAGES)
    assert set(SCORE_NAMES) <= set(expected)
    for rank in ranks[world_size]:
        scores = rank["scores"]
        assert scores == ranks[world_size][0]["scores"]  # every rank: rank 0's dict
        assert list(scores) == list(expected)
        for name in SCORE_NAMES:
            assert scores[name] == pytest.approx(expected[name], rel=1e-6), name
        assert {key: scores[key] for key in OTHER_KEYS} == {key: expected[key]
                                                            for key in OTHER_KEYS}


@pytest.mark.slow  # the ``ranks`` fixture
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_gather_every_rank_s_features_in_the_global_order(ranks, one_process, world_size):
    single = one_process["reference"].features
    assert len(np.unique(single, axis=0)) == REFERENCE_IMAGES  # any other order would differ
    assert [rank["group_rank"] for rank in ranks[world_size]] == list(range(world_size))
    # Each rank featured its strided share only (9 + 8, or 6 + 6 + 5)...
    assert [rank["share"] for rank in ranks[world_size]] == [
        len(range(index, REFERENCE_IMAGES, world_size)) for index in range(world_size)]
    for rank in ranks[world_size]:
        assert rank["group_size"] == world_size
        # ... and holds every rank's rows, where one process has them.
        np.testing.assert_array_equal(rank["reference"].features, single)


@pytest.mark.slow  # the ``ranks`` fixture
@pytest.mark.parametrize("world_size", [2, 3])
def test_reduced_sums_give_numpy_statistics_of_the_gathered_features(ranks, world_size):
    first = ranks[world_size][0]["reference"]
    mu, sigma = feature_statistics(first.features)
    assert first.mu == pytest.approx(mu, rel=1e-9)
    assert first.sigma == pytest.approx(sigma, rel=1e-9)
    for rank in ranks[world_size]:
        assert not rank["reference"].cache_hit
        np.testing.assert_array_equal(rank["reference"].mu, first.mu)
        np.testing.assert_array_equal(rank["reference"].sigma, first.sigma)


@pytest.mark.slow  # the ``ranks`` fixture
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_read_and_write_the_one_process_reference_cache(ranks, ranks_out, one_process,
                                                              setting, world_size):
    single = one_process["reference"]
    for rank in ranks[world_size]:  # one process's file: read by rank 0, broadcast
        assert rank["cached"].cache_hit
        np.testing.assert_array_equal(rank["cached"].features, single.features)
        np.testing.assert_array_equal(rank["cached"].sigma, single.sigma)
    # The ranks' file: under one process's key (the file name hashes it), read by one process.
    written = list((ranks_out / f"cache-{world_size}").glob("*.npz"))
    assert [file.name for file in written] == [file.name
                                               for file in one_process["cache"].glob("*.npz")]
    read = reference_statistics_of_images(load_inception(setting.weights, device="cpu"),
                                          setting.reference, CONFIG.fid_dims, CONFIG.batch_size,
                                          written[0].parent)
    assert read.cache_hit
    np.testing.assert_array_equal(read.sigma, ranks[world_size][0]["reference"].sigma)


@pytest.mark.slow  # the ``ranks`` fixture
@pytest.mark.parametrize("world_size", [2, 3])
def test_a_rank_without_images_and_a_failed_score_keep_the_ranks_in_step(ranks, one_process,
                                                                         world_size):
    single = one_process["reference"].features[:2]
    for rank in ranks[world_size]:
        np.testing.assert_array_equal(rank["two_images"].features, single)
        assert rank["two_images"].mu == pytest.approx(single.mean(axis=0), rel=1e-9)
    failures = [rank.get("failure") for rank in ranks[world_size]]
    assert failures[0] == ("ValueError: The Inception Score needs at least 3 images (is_splits), "
                           "got 2.")
    assert failures[1:] == [f"RuntimeError: Scoring failed on the group's rank 0: {failures[0]}"
                            ] * (world_size - 1)
