"""Fréchet distance (atelier.core.metrics.fid) against pytorch-fid and a closed form."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pytorch_fid.fid_score import calculate_frechet_distance

from atelier.core import metrics


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
