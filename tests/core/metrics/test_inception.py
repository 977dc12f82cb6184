"""The FID Inception (atelier.core.metrics.inception, .features): the stand-in weights loaded
as pytorch-fid loads them, the features they give, and missing weights.

The real FID weights cannot be downloaded here: Inception tests use the stand-in built by
``scripts/build_standin_inception.py`` (the ``standin_torch_home`` fixture), which pytorch-fid
itself loads from the same place. Small sample counts use dims 64/192 (a 2048 x 2048
covariance would be singular), and CPU Inception is slow, so counts stay small.
"""

from __future__ import annotations

import hashlib
import urllib.error

import numpy as np
import pytest
import torch
from digit_cases import digits, noise
from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3

from atelier.core import metrics
from atelier.core.metrics.standin import standin_weights_path
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


@pytest.fixture
def download_fails(monkeypatch):
    """pytorch-fid's download fails on purpose (as offline), whatever this machine's network;
    returns the list of URLs that were tried."""
    tried = []

    def refuse(url, destination, *args, **kwargs):
        tried.append(url)
        raise urllib.error.URLError("download refused by the test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return tried


def test_without_weights_a_failed_download_says_where_the_file_goes(tmp_path, monkeypatch,
                                                                   download_fails):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    expected_place = tmp_path / "empty_torch_home" / "hub" / "checkpoints" / metrics.WEIGHTS_FILENAME
    with pytest.raises(InceptionWeightsNotFoundError) as raised:
        metrics.load_inception(device="cpu")  # auto without a stand-in folder: nothing to fall back on
    assert download_fails == [FID_WEIGHTS_URL]  # one attempt, pytorch-fid's URL
    message = str(raised.value)
    assert metrics.WEIGHTS_FILENAME in message and str(expected_place) in message
    assert "evaluation.inception_weights" in message and "--weights" in message
    assert "download refused by the test" in message
    assert not expected_place.exists()  # no partial download left behind
    with pytest.raises(InceptionWeightsNotFoundError, match="nowhere.pth"):
        metrics.load_inception(tmp_path / "nowhere.pth", device="cpu")


@pytest.mark.slow  # builds the full 64-image stand-in in float64 (about 35 s)
def test_auto_falls_back_to_a_standin_built_once_and_labelled(tmp_path, monkeypatch,
                                                             download_fails, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    cache = tmp_path / "cache"
    weights = metrics.resolve_inception_weights("auto", standin_dir=cache)
    assert weights.path == standin_weights_path(cache).resolve() and weights.path.is_file()
    assert not weights.is_official and "STAND-IN" in weights.warning
    assert weights.sha256 == hashlib.sha256(weights.path.read_bytes()).hexdigest()
    assert "building the deterministic STAND-IN" in caplog.text
    built_at = weights.path.stat().st_mtime_ns
    again = metrics.resolve_inception_weights("auto", standin_dir=cache)
    assert again == weights and weights.path.stat().st_mtime_ns == built_at  # built once
    assert len(download_fails) == 2  # the official file is still tried first, every time
    network = metrics.load_inception("auto", device="cpu", standin_dir=cache)
    assert network.weights.sha256 == weights.sha256


def test_official_refuses_a_standin_and_a_failed_download(tmp_path, monkeypatch,
                                                          standin_torch_home, download_fails):
    monkeypatch.setenv("TORCH_HOME", str(standin_torch_home))  # a stand-in at the hub path
    with pytest.raises(InceptionWeightsNotFoundError, match="is not the official file"):
        metrics.resolve_inception_weights("official", standin_dir=tmp_path / "cache")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(InceptionWeightsNotFoundError, match="downloading it failed"):
        metrics.resolve_inception_weights("official", standin_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # official never builds a stand-in


@pytest.mark.slow
def test_the_standin_is_the_same_whatever_the_thread_count():
    """Calibrated in float64: the CPU's kernels and thread count do not change the file (in
    float32 one machine built different weights at one and at two threads)."""
    from atelier.core.metrics.standin import build_standin_state_dict

    threads = torch.get_num_threads()
    try:
        built = []
        for count in (1, 2):
            torch.set_num_threads(count)
            built.append(build_standin_state_dict(calibration_images=4, batch_size=2))
    finally:
        torch.set_num_threads(threads)
    one, two = built
    assert one.keys() == two.keys()
    assert all(one[key].dtype == two[key].dtype for key in one)
    assert all(torch.equal(one[key], two[key]) for key in one)
    assert one["Mixed_7c.branch_pool.bn.running_var"].dtype == torch.float32
    assert one["Mixed_7c.branch_pool.bn.running_var"].abs().sum() > 0  # calibrated, not reset
