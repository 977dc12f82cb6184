"""The FID Inception (atelier.core.metrics.inception, .features): the stand-in weights loaded
as pytorch-fid loads them, the features they give, and missing weights.

The real FID weights cannot be downloaded here: Inception tests use the stand-in built by
``scripts/build_standin_inception.py`` (the ``standin_torch_home`` fixture), which pytorch-fid
itself loads from the same place. Small sample counts use dims 64/192 (a 2048 x 2048
covariance would be singular), and CPU Inception is slow, so counts stay small.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from digit_cases import digits, noise
from pytorch_fid.inception import InceptionV3

from atelier.core import metrics
from atelier.errors import InceptionWeightsNotFoundError

# --- the stand-in network and pytorch-fid ------------------------------------------------


@pytest.fixture(scope="module")
def digit_and_noise_features(standin_torch_home):
    """dims-64 stand-in features of two disjoint sets of 100 digits and of 100 noise images."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(standin_torch_home))
        inception = metrics.load_inception(device="cpu")
    sets = {"digits_a": digits(range(0, 100)), "digits_b": digits(range(100, 200)),
            "noise": noise(100)}
    return {name: metrics.extract_features(inception, images.split(50), dims=64).features
            for name, images in sets.items()}


def test_standin_is_loaded_by_pytorch_fid_and_gives_the_same_features(standin):
    images = torch.cat([digits(range(2)), noise(1)]).expand(-1, 3, -1, -1)
    reference = InceptionV3(output_blocks=[0, 1, 2, 3]).eval()  # pytorch-fid's own loading
    with torch.no_grad():
        expected = reference(images.float() / 255)
    for dims, block in zip(metrics.FID_DIMS, expected, strict=True):
        ours = metrics.extract_features(standin, [images], dims=dims, logits=(dims == 2048))
        pooled = torch.nn.functional.adaptive_avg_pool2d(block, 1).flatten(1).double().numpy()
        np.testing.assert_allclose(ours.features, pooled, rtol=1e-5, atol=1e-6)
    # Logits: the 1008-way classifier on pool3, without its bias.
    weight = torch.load(metrics.hub_weights_path(), weights_only=True)["fc.weight"]
    np.testing.assert_allclose(ours.logits, pooled @ weight.double().numpy().T, rtol=1e-4, atol=1e-4)
    assert standin.weights.sha256 == metrics.resolve_inception_weights().sha256
    assert not standin.weights.is_official and "STAND-IN" in standin.weights.warning


def test_standin_separates_noise_from_digits_by_a_wide_margin(digit_and_noise_features):
    f = digit_and_noise_features
    statistics = {name: metrics.feature_statistics(features) for name, features in f.items()}
    digits_vs_digits = metrics.compute_fid(*statistics["digits_a"], *statistics["digits_b"])
    digits_vs_noise = metrics.compute_fid(*statistics["digits_a"], *statistics["noise"])
    print(f"stand-in FID (dims 64, 100 vs 100): digits/digits {digits_vs_digits:.5f}, "
          f"digits/noise {digits_vs_noise:.3f}")
    assert digits_vs_noise > 100 * digits_vs_digits
    # Features are not collapsed: they vary across images.
    assert np.median(f["digits_a"].std(axis=0)) > 1e-3


def test_kid_of_a_set_against_itself_is_about_zero_and_against_noise_large(digit_and_noise_features):
    f = digit_and_noise_features
    kid_self, _ = metrics.compute_kid(f["digits_a"], f["digits_a"], subsets=50, subset_size=50)
    kid_digits, _ = metrics.compute_kid(f["digits_a"], f["digits_b"], subsets=50, subset_size=50)
    kid_noise, _ = metrics.compute_kid(f["digits_a"], f["noise"], subsets=50, subset_size=50)
    print(f"stand-in KID (dims 64): self {kid_self:.2e}, digits {kid_digits:.2e}, noise {kid_noise:.3f}")
    assert abs(kid_self) < 1e-3 * kid_noise
    assert abs(kid_digits) < 1e-2 * kid_noise
    assert kid_noise > 0.1


# --- missing weights ----------------------------------------------------------------------


def test_offline_without_weights_fails_fast_and_says_where_the_file_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    expected_place = tmp_path / "empty_torch_home" / "hub" / "checkpoints" / metrics.WEIGHTS_FILENAME
    started = time.monotonic()
    with pytest.raises(InceptionWeightsNotFoundError) as raised:
        metrics.load_inception(device="cpu")  # the network is closed here: the download fails
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert metrics.WEIGHTS_FILENAME in message and str(expected_place) in message
    assert "evaluation.inception_weights" in message and "--weights" in message
    assert not expected_place.exists()  # no partial download left behind
    assert elapsed < metrics.DOWNLOAD_TIMEOUT_S + 5
    with pytest.raises(InceptionWeightsNotFoundError, match="nowhere.pth"):
        metrics.load_inception(tmp_path / "nowhere.pth", device="cpu")
