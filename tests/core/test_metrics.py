"""Inception features, FID, IS, KID and the reference cache (atelier.core.metrics).

The real FID weights cannot be downloaded here: Inception tests use the stand-in built by
``scripts/build_standin_inception.py`` (the ``standin_torch_home`` fixture), which pytorch-fid
itself loads from the same place. Small sample counts use dims 64/192 (a 2048 x 2048
covariance would be singular), and CPU Inception is slow, so counts stay small.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from digit_cases import digits, noise, write_pngs
from pytorch_fid.fid_score import calculate_frechet_distance
from pytorch_fid.inception import InceptionV3
from scipy import stats

from atelier.core import metrics
from atelier.errors import InceptionWeightsNotFoundError

# --- Inception Score: closed forms and an independent oracle -----------------------------


def test_inception_score_of_uniform_predictions_is_one():
    mean, std = metrics.compute_inception_score(np.zeros((100, 1008)), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 7, 10])
def test_inception_score_of_k_equally_frequent_one_hot_classes_is_k(k):
    splits, per_split = 4, 5 * k
    classes = np.arange(splits * per_split) % k  # each split holds every class equally often
    logits = np.zeros((len(classes), 1008))
    logits[np.arange(len(classes)), classes] = 1000.0  # softmax is one-hot in float64
    mean, std = metrics.compute_inception_score(logits, splits=splits, shuffle_seed=None)
    assert mean == pytest.approx(k, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-9)


def _inception_score_oracle(logits: np.ndarray, splits: int) -> tuple[float, float]:
    """The standard formula, written independently: scipy's KL per image, one split at a time."""
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    n, scores = len(logits), []
    for i in range(splits):  # OpenAI's improved-gan split boundaries
        part = probabilities[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0)
        scores.append(np.exp(np.mean([stats.entropy(p, marginal) for p in part])))
    return float(np.mean(scores)), float(np.std(scores))


@pytest.mark.parametrize("splits", [1, 3, 10])
def test_inception_score_matches_numpy_oracle(splits):
    rng = np.random.default_rng(splits)
    logits = rng.normal(scale=3.0, size=(200, 1008))
    assert metrics.compute_inception_score(logits, splits, shuffle_seed=None) == pytest.approx(
        _inception_score_oracle(logits, splits), rel=1e-10)
    # Shuffled (the default): the oracle on the same permutation.
    shuffled = logits[np.random.RandomState(2020).permutation(len(logits))]
    assert metrics.compute_inception_score(logits, splits) == pytest.approx(
        _inception_score_oracle(shuffled, splits), rel=1e-10)


# --- FID ----------------------------------------------------------------------------------


def _statistics(rng: np.random.Generator, n: int, d: int, shift: float):
    samples = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d) + shift
    return samples.mean(axis=0), np.cov(samples, rowvar=False)


@pytest.mark.parametrize("n", [500, 20])  # 20 < d: singular covariances, as with few images
def test_frechet_distance_equals_pytorch_fid(n):
    rng = np.random.default_rng(n)
    first, second = _statistics(rng, n, 64, 0.0), _statistics(rng, n, 64, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its sqrtm(disp=False)
        expected = calculate_frechet_distance(*first, *second)
    assert metrics.compute_fid(*first, *second) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_closed_form_for_diagonal_covariances():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert metrics.compute_fid(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)
    assert metrics.compute_fid(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0, abs=1e-9)


# --- KID ----------------------------------------------------------------------------------


def _mmd2_unbiased_oracle(x: np.ndarray, y: np.ndarray) -> float:
    """Bińkowski et al.'s unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written as sums."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (a @ b / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_matches_formula_and_subset_draws(monkeypatch):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 8)), rng.normal(0.5, 1.0, size=(25, 8))
    # One subset as large as the smaller set: the same draws as torch-fidelity's.
    draws = np.random.RandomState(7)
    ia, ib = draws.choice(30, 25, replace=False), draws.choice(25, 25, replace=False)
    mean, std = metrics.compute_kid(a, b, subsets=1, subset_size=1000, seed=7)
    assert mean == pytest.approx(_mmd2_unbiased_oracle(a[ia], b[ib]), rel=1e-10)
    assert std == 0.0
    # Kernel matrices computed once (small sets) or per subset (large sets): same values.
    many = metrics.compute_kid(a, b, subsets=20, subset_size=10)
    monkeypatch.setattr(metrics, "_KID_GRAM_LIMIT", 0)
    assert metrics.compute_kid(a, b, subsets=20, subset_size=10) == pytest.approx(many, rel=1e-10)


# --- the stand-in network and pytorch-fid ------------------------------------------------


@pytest.fixture
def standin(standin_torch_home, monkeypatch):
    """TORCH_HOME pointing at the stand-in weights; returns the loaded FIDInception (CPU)."""
    monkeypatch.setenv("TORCH_HOME", str(standin_torch_home))
    return metrics.load_inception(device="cpu")


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


# --- command line == python -m pytorch_fid -----------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def two_image_folders(tmp_path_factory):
    """200 clean digits and 200 other digits with added noise, as 32 x 32 grayscale PNGs."""
    root = tmp_path_factory.mktemp("folders")
    clean = write_pngs(root / "a", digits(range(200)))
    grain = torch.randn(200, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 30
    noisy_digits = digits(range(200, 400)).float() + grain
    noisy = write_pngs(root / "b", noisy_digits.clamp(0, 255).round().to(torch.uint8))
    return clean, noisy


@pytest.mark.slow
@pytest.mark.parametrize("dims", [64, 192])
def test_cli_fid_equals_pytorch_fid_cli(dims, two_image_folders, standin_torch_home):
    from conftest import test_env

    env = test_env(TORCH_HOME=str(standin_torch_home))
    folder_a, folder_b = map(str, two_image_folders)
    common = ["--dims", str(dims), "--batch-size", "50", "--device", "cpu", "--num-workers", "0"]
    ours = _cli("atelier.core.metrics", "fid", folder_a, folder_b, *common, env=env)
    theirs = _cli("pytorch_fid", folder_a, folder_b, *common, env=env)
    ours_fid = float(re.fullmatch(r"FID: (\S+)\n", ours).group(1))
    theirs_fid = float(re.search(r"FID:\s+(\S+)", theirs).group(1))
    print(f"dims {dims}: atelier {ours_fid!r}, pytorch_fid {theirs_fid!r}")
    assert ours_fid > 0.1  # a real difference to agree on
    assert ours_fid == pytest.approx(theirs_fid, rel=1e-3)


def test_cli_inception_score_prints_mean_and_std(tmp_path, standin_torch_home):
    from conftest import test_env

    folder = write_pngs(tmp_path / "images", digits(range(4)))
    output = _cli("atelier.core.metrics", "is", str(folder), "--splits", "2", "--device", "cpu",
                  "--num-workers", "0", env=test_env(TORCH_HOME=str(standin_torch_home)))
    mean, std = map(float, re.fullmatch(r"IS: (\S+) \+- (\S+)\n", output).groups())
    assert 1.0 <= mean <= 1008 and std >= 0


# --- reference statistics cache ----------------------------------------------------------


class _ImagesSeen:
    """Counts the images that go through an Inception network's forward."""

    def __init__(self, inception):
        self.count = 0
        self._handle = inception.register_forward_hook(self._seen)

    def _seen(self, module, args, output):
        self.count += len(args[0])

    def close(self):
        self._handle.remove()


def test_second_evaluation_reuses_reference_statistics_without_an_inception_pass(
        standin, tmp_path, caplog):
    reference, generated = digits(range(12)), digits(range(500, 510))
    options = dict(dims=64, is_splits=2, kid_subsets=5, kid_subset_size=10, batch_size=50,
                   cache_dir=tmp_path / "cache")
    seen = _ImagesSeen(standin)
    try:
        first = metrics.compute_metrics([generated], reference, standin, **options)
        assert seen.count == 12 + 10
        caplog.clear()
        with caplog.at_level("INFO", logger="atelier.core.metrics"):
            second = metrics.compute_metrics([generated], reference, standin, **options)
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


# A trained generator scoring far below an untrained one is checked end to end, through
# `kedro run --pipeline=train`, in tests/test_mlflow_tracking.py.
