"""Kernel Inception Distance (atelier.core.metrics.kid) against the formula written as sums."""

from __future__ import annotations

import numpy as np
import pytest

from atelier.core import metrics
from atelier.core.metrics import kid


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
    monkeypatch.setattr(kid, "_KID_GRAM_LIMIT", 0)
    assert metrics.compute_kid(a, b, subsets=20, subset_size=10) == pytest.approx(many, rel=1e-10)
