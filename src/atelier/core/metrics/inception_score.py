"""Inception Score from the FID Inception's logits, as torch-fidelity computes it."""

from __future__ import annotations

import numpy as np
from scipy import special


def compute_inception_score(logits: np.ndarray, splits: int = 10,
                            shuffle_seed: int | None = 2020) -> tuple[float, float]:
    """Inception Score (Salimans et al., 2016): mean and std over ``splits`` of

        IS = exp( E_x KL( p(y|x) || p(y) ) ),   p(y|x) = softmax(logits),  p(y) = E_x p(y|x)

    Matches torch-fidelity's ``isc_features_to_metric`` (the default of torch-fidelity and
    torchmetrics): all 1008 logits of the FID Inception computed *without* the fc bias
    ("logits_unbiased"), because OpenAI's reference code (improved-gan) took the softmax
    of ``pool3 @ W`` from the TensorFlow graph, before the bias add; rows shuffled with
    ``np.random.RandomState(shuffle_seed).permutation`` (None: no shuffle, as OpenAI's code),
    so that a folder sorted by class does not give one class per split; splits are the
    contiguous slices ``[i N // splits, (i + 1) N // splits)``; the std is ``np.std``
    (ddof 0). Computed in float64.
    """
    logits = np.asarray(logits, dtype=np.float64)
    n = len(logits)
    if n < splits:
        raise ValueError(
            f"The Inception Score needs at least {splits} images (is_splits), got {n}.")
    if shuffle_seed is not None:
        logits = logits[np.random.RandomState(shuffle_seed).permutation(n)]
    log_p = special.log_softmax(logits, axis=1)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        part = slice(i * n // splits, (i + 1) * n // splits)
        p_y = p[part].mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            # 0 log 0 = 0: a class no image of the split predicts adds nothing (not NaN).
            terms = np.where(p[part] > 0, p[part] * (log_p[part] - np.log(p_y)), 0.0)
        scores.append(np.exp(terms.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
