"""Inception Score (atelier.core.metrics.inception_score): closed forms and an independent oracle."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from atelier.core import metrics


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
