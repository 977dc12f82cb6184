"""Reference statistics cached on disk (atelier.core.metrics.cache), through
:func:`atelier.core.metrics.score_batches` and ``reference_statistics_of_images``.

Inception runs with the stand-in weights (the ``standin_torch_home`` fixture); see
test_inception.py.
"""

from __future__ import annotations

import pytest
import torch
from digit_cases import digits

from atelier.core import metrics


class _ImagesSeen:
    """Counts the images that go through an Inception network's forward."""

    def __init__(self, inception):
        self.count = 0
        self._handle = inception.register_forward_hook(self._seen)

    def _seen(self, module, args, output):
        self.count += len(args[0])

    def close(self):
        self._handle.remove()


@pytest.mark.slow  # two Inception passes
def test_second_evaluation_reuses_reference_statistics_without_an_inception_pass(
        standin, tmp_path, caplog):
    reference, generated = digits(range(12)), digits(range(500, 510))
    config = metrics.EvaluationConfig(fid_dims=64, is_splits=2, kid_subsets=5, kid_subset_size=10,
                                      batch_size=50, reference_cache_dir=str(tmp_path / "cache"))
    seen = _ImagesSeen(standin)
    try:
        first = metrics.score_batches([generated], reference, standin, config)
        assert seen.count == 12 + 10
        caplog.clear()
        with caplog.at_level("INFO", logger="atelier.core.metrics"):
            second = metrics.score_batches([generated], reference, standin, config)
        assert seen.count == 12 + 10 + 10  # the generated images only
    finally:
        seen.close()
    assert "reused" in caplog.text
    assert second == first
    assert set(first) >= {"fid", "inception_score", "inception_score_std", "kid", "kid_std",
                          "num_samples", "dims", "inception_weights_sha256",
                          "inception_weights_warning"}
    assert (first["num_samples"], first["num_reference"], first["dims"]) == (10, 12, 64)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_changed_reference_images_are_recomputed(standin, tmp_path):
    cache = tmp_path / "cache"
    images = digits(range(8))
    first = metrics.reference_statistics_of_images(standin, images, dims=64, cache_dir=cache)
    assert not first.cache_hit
    assert metrics.reference_statistics_of_images(standin, images, dims=64, cache_dir=cache).cache_hit
    changed = images.clone()
    changed[3, 0, 5, 5] ^= 1  # one pixel, one bit
    recomputed = metrics.reference_statistics_of_images(standin, changed, dims=64, cache_dir=cache)
    assert not recomputed.cache_hit
    other_dims = metrics.reference_statistics_of_images(standin, images, dims=192, cache_dir=cache)
    assert not other_dims.cache_hit and other_dims.mu.shape == (192,)
    assert len(list(cache.glob("*.npz"))) == 3


def test_changed_weights_recompute_the_reference_statistics(standin, tmp_path):
    cache = tmp_path / "cache"
    images = digits(range(8))
    assert not metrics.reference_statistics_of_images(standin, images, dims=64, cache_dir=cache).cache_hit
    # Other weights, given by explicit path: a copy with one BatchNorm statistic moved.
    state_dict = torch.load(standin.weights.path, weights_only=True)
    state_dict["Conv2d_1a_3x3.bn.running_mean"][0] += 0.5
    other_path = tmp_path / "other_weights.pth"
    torch.save(state_dict, other_path)
    other = metrics.load_inception(other_path, device="cpu")
    assert other.weights.sha256 != standin.weights.sha256
    seen = _ImagesSeen(other)
    try:
        statistics = metrics.reference_statistics_of_images(other, images, dims=64, cache_dir=cache)
    finally:
        seen.close()
    assert not statistics.cache_hit and seen.count == 8
    assert len(list(cache.glob("*.npz"))) == 2


# A trained generator scoring far below an untrained one is checked end to end, through
# `kedro run --pipeline=train`, in tests/tracking/test_mlflow_tracking.py.
