"""Kernel Inception Distance from Inception features, as torch-fidelity computes it."""

from __future__ import annotations

import numpy as np

# Up to this many rows per side, KID computes each kernel matrix once and subsets index it.
_KID_GRAM_LIMIT = 4096


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1) ** 3


def compute_kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 100,
                subset_size: int = 1000, seed: int = 2020) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al., 2018): mean and std over ``subsets`` of
    the unbiased estimate of MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3:

        MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m (m-1)) + sum_{i!=j} k(y_i, y_j) / (m (m-1))
                  - 2 sum_{i,j} k(x_i, y_j) / m^2

    on ``m``-sized subsets drawn without replacement. Matches torch-fidelity's
    ``kid_features_to_metric`` (the same subset draws from ``np.random.RandomState(seed)``,
    ``np.std`` with ddof 0), except that ``m`` is capped at the smaller set's size instead
    of failing: KID is unbiased, which is why it is reported at the small sample counts
    where FID's bias dominates.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError("KID: the two feature sets have different dimensions.")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least two images on each side.")
    gram = max(len(a), len(b)) <= _KID_GRAM_LIMIT
    if gram:
        k_aa, k_bb = _polynomial_kernel(a, a), _polynomial_kernel(b, b)
        k_ab = _polynomial_kernel(a, b)
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for s in range(subsets):
        ia = rng.choice(len(a), m, replace=False)
        ib = rng.choice(len(b), m, replace=False)
        if gram:
            kxx, kyy, kxy = k_aa[np.ix_(ia, ia)], k_bb[np.ix_(ib, ib)], k_ab[np.ix_(ia, ib)]
        else:
            x, y = a[ia], b[ib]
            kxx, kyy = _polynomial_kernel(x, x), _polynomial_kernel(y, y)
            kxy = _polynomial_kernel(x, y)
        mmds[s] = ((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                   - 2 * kxy.sum() / (m * m))
    return float(np.mean(mmds)), float(np.std(mmds))
