"""Inception Score and KID cross-checked against torch-fidelity, a second well-kept library.

Two levels, with the tolerances README.md ("Metrics") documents:

1. The same Inception features (logits for IS, pool features for KID) through both
   libraries' formulas: they agree to 1e-9 (relative), i.e. to float64 rounding.
2. The same images and the same weights file through each library end to end
   (torch-fidelity's own Inception implementation loads pytorch-fid's file): at 299 x 299,
   where neither library resizes, IS agrees to 1e-3 and KID to 5 % (relative). The
   remaining gap is the input scaling: pytorch-fid maps pixels to ``(x - 127.5) / 127.5``,
   torch-fidelity to ``(x - 128) / 128`` (as TensorFlow's graph did). At other sizes the two
   libraries also resize differently (torch's bilinear vs torch-fidelity's TF-1.x one), so
   scores of the same images differ more; compare figures from one library only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch_fidelity
from digit_cases import digits
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from atelier.core import metrics
from atelier.core.metrics.inception import hub_weights_path

SUBSETS, SUBSET_SIZE, SPLITS = 20, 24, 4


class _Images(torch.utils.data.Dataset):
    """uint8 3 x H x W tensors, as torch-fidelity reads them."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def _rgb_digits(indices, size: int) -> torch.Tensor:
    return digits(indices, size=size).expand(-1, 3, -1, -1).contiguous()


def _torch_fidelity_kid(a: np.ndarray, b: np.ndarray) -> dict:
    return kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=SUBSETS,
                                  kid_subset_size=SUBSET_SIZE, verbose=False, rng_seed=2020)


@pytest.mark.slow  # a full Inception pass on both sides
def test_the_same_features_give_the_same_scores(standin):
    real = metrics.extract_features(standin, _rgb_digits(range(0, 32), 32).split(32), dims=2048,
                                    logits=True)
    fake = metrics.extract_features(standin, _rgb_digits(range(900, 932), 32).split(32), dims=2048)
    kid = metrics.compute_kid(real.features, fake.features, subsets=SUBSETS, subset_size=SUBSET_SIZE)
    theirs = _torch_fidelity_kid(real.features, fake.features)
    assert kid[0] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert kid[1] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)

    # The stand-in's logits are nearly uniform (IS ~ 1); peaked logits exercise the formula
    # where it matters (IS of several classes), as well as the network's own.
    peaked = np.random.default_rng(0).normal(size=(200, 1008)) * 6
    for logits in (real.logits, peaked):
        ours = metrics.compute_inception_score(logits, splits=SPLITS)
        theirs = isc_features_to_metric(torch.from_numpy(logits), splits=SPLITS)
        assert ours[0] == pytest.approx(theirs["inception_score_mean"], rel=1e-9)
        assert ours[1] == pytest.approx(theirs["inception_score_std"], rel=1e-9)
    assert metrics.compute_inception_score(peaked, splits=SPLITS)[0] > 3


@pytest.mark.slow  # two Inception passes at 299 x 299 on the CPU
def test_the_same_images_and_weights_agree_end_to_end(standin):
    real, fake = _rgb_digits(range(0, 32), 299), _rgb_digits(range(900, 932), 299)
    theirs = torch_fidelity.calculate_metrics(
        input1=_Images(fake), input2=_Images(real), isc=True, kid=True, cuda=False, cache=False,
        feature_extractor_weights_path=str(hub_weights_path()), kid_subsets=SUBSETS,
        kid_subset_size=SUBSET_SIZE, isc_splits=SPLITS, batch_size=32, verbose=False,
        save_cpu_ram=True)  # no DataLoader worker processes
    fake_features = metrics.extract_features(standin, fake.split(32), dims=2048, logits=True)
    real_features = metrics.extract_features(standin, real.split(32), dims=2048)
    inception_score, _ = metrics.compute_inception_score(fake_features.logits, splits=SPLITS)
    kid, _ = metrics.compute_kid(fake_features.features, real_features.features, subsets=SUBSETS,
                                 subset_size=SUBSET_SIZE)
    assert inception_score == pytest.approx(theirs["inception_score_mean"], rel=1e-3)
    assert kid == pytest.approx(theirs["kernel_inception_distance_mean"], rel=0.05)
