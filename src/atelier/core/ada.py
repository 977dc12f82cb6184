"""Adaptive augmentation strength: the overfitting heuristic of StyleGAN2-ADA steering ``p``.

Karras, Aittala, Hellsten, Laine, Lehtinen and Aila, "Training Generative Adversarial
Networks with Limited Data" (NeurIPS 2020, https://arxiv.org/abs/2006.06676), section 3,
watch the discriminator for signs of memorising the training set and raise the
augmentation strength when it does, lower it when it does not. Their heuristic is the
mean sign of the discriminator's raw outputs (logits) on the training images,

    r_t = E[sign(D_train)],

which is 0 when D cannot tell the reals from fakes (half its logits on reals positive)
and 1 when it is certain of every real: complete overfitting. The target is 0.6: above it
the augmentation probability ``p`` goes up, below it ``p`` goes down. Starting from
``p = 0``, it is adjusted every few minibatches (every 4 in the paper) by

    p <- clamp(p + sign(r_t - target) * images / (ada_kimg * 1000), 0, 1),

``images`` being the images the discriminator judged as real since the last adjustment
(``batch_size * world_size * interval``), so that ``p`` can rise from 0 to 1 in
``ada_kimg`` thousand images and no faster, however the steps are sized. At ``r_t`` equal to
the target ``p`` stays where it is.

What ``p`` means here: the per-image probability of each DiffAugment transform in
Atelier's :func:`atelier.core.augment.diff_augment` (its ``strength``), the role
``training.augment_p`` plays as a fixed setting. It is not the probability of ADA's own
18-transform pipeline, but it acts the same way: at ``p < 1`` the identity stays in the
transformation family, and the paper found augmentation non-leaking below about 0.8 (see
:mod:`atelier.core.augment` for what cutout leaks at ``p = 1``).

Defaults and why: ``target = 0.6`` is the paper's. ``ada_kimg = 100``: the official
StyleGAN2-ADA uses 500 (thousand images for ``p`` to go from 0 to 1) when training from
scratch and 100 when resuming or transferring from a trained network, to react faster
from the start; Atelier's runs are short (a few thousand steps of a few dozen images, so
500k images would be longer than many whole runs), so 100 is the default. ``interval = 4``
steps is the paper's "every four minibatches". ``p = 0`` is where the paper starts.

Cost and reproducibility: :meth:`AdaptiveAugment.accumulate` sums the signs on the logits'
device as a float32 tensor and never synchronises with the host; :meth:`~AdaptiveAugment.step`
reads the sum and count back once per adjustment (one host sync every ``interval``
steps). The sums of signs are whole numbers, exact in float32 below 2**24 images per
interval. ``p`` itself is a Python float and :meth:`~AdaptiveAugment.state_dict` holds
only Python floats and ints (``torch.load(weights_only=True)`` reads them), so a resumed
run continues with bit-identical ``p`` and accumulators, also when interrupted mid-interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

_WHERE = "Fix it in conf/base/parameters_training.yml."


def _identity(pair: Tensor) -> Tensor:
    return pair


@dataclasses.dataclass
class AdaptiveAugment:
    """The augmentation probability ``p``, adjusted from the discriminator's logits on reals.

    Each training step: :meth:`accumulate` the D step's logits on the real images (as D
    saw them), then call :meth:`step` once. Every ``interval`` steps it computes ``r_t``
    (kept in :attr:`last_rt` for logging), moves ``p`` and starts a new interval. Use
    :attr:`p` as the strength of the next step's :func:`~atelier.core.augment.diff_augment`.
    """

    target: float = 0.6  # training.ada_target: r_t above it raises p, below lowers it
    ada_kimg: float = 100.0  # training.ada_kimg: thousand images for p to go 0 -> 1
    interval: int = 4  # training.ada_interval: steps between adjustments
    p: float = 0.0  # the current strength, a Python float
    last_rt: float | None = dataclasses.field(default=None, init=False)
    # Since the last adjustment: the sum of sign(D(real)) (a tensor on the logits' device
    # once accumulated, a float after loading a state), how many logits and how many steps.
    _sign_sum: Tensor | float = dataclasses.field(default=0.0, init=False, repr=False,
                                                  compare=False)
    _count: int = dataclasses.field(default=0, init=False, repr=False)
    _steps: int = dataclasses.field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not _is_real(self.target) or not 0.0 < self.target < 1.0:
            raise ValueError(
                f"training.ada_target must be in (0, 1) (the paper uses 0.6), got "
                f"{self.target!r}. {_WHERE}"
            )
        if not _is_real(self.ada_kimg) or not self.ada_kimg > 0.0:
            raise ValueError(
                f"training.ada_kimg must be a positive number of thousand images (500 from "
                f"scratch, 100 when resuming in StyleGAN2-ADA), got {self.ada_kimg!r}. {_WHERE}"
            )
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) \
                or self.interval < 1:
            raise ValueError(
                f"training.ada_interval must be a whole number of steps, 1 or more (the "
                f"paper uses 4), got {self.interval!r}. {_WHERE}"
            )
        if not _is_real(self.p) or not 0.0 <= self.p <= 1.0:
            raise ValueError(
                f"The initial augmentation probability p must be in [0, 1], got {self.p!r}."
            )
        self.target, self.ada_kimg, self.p = float(self.target), float(self.ada_kimg), float(self.p)

    def accumulate(self, real_logits: Tensor) -> None:
        """Add the signs of ``real_logits``, D's raw outputs on this step's real images
        (any shape, dtype and device; detached here). No host synchronisation."""
        signs = real_logits.detach().sign().sum(dtype=torch.float32)
        self._sign_sum = self._sign_sum + signs
        self._count += real_logits.numel()

    def step(self, batch_size: int, world_size: int = 1,
             reduce: Callable[[Tensor], Tensor] = _identity) -> float | None:
        """End a training step; every ``interval`` steps adjust :attr:`p` and return ``r_t``.

        ``batch_size`` is the number of real images per step on this process and
        ``world_size`` the number of processes, so ``batch_size * world_size * interval``
        images went by since the last adjustment (pass the global batch and 1 if you
        prefer). Under DDP pass ``reduce``: it gets the 2-element float32 tensor
        ``[sum of signs, count]`` (on the device of the accumulated logits; CPU when none
        were) and must return its sum over the ranks, e.g. an ``all_reduce`` that returns
        its argument. It is called on every rank at every adjustment, so the collective
        always matches up, and every rank then computes the same ``r_t`` and ``p``.
        Returns ``None`` between adjustments, and at an adjustment with no logits
        accumulated on any rank (``p`` is then left as it is).
        """
        for name, value in (("batch_size", batch_size), ("world_size", world_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number, 1 or more, got {value!r}.")
        self._steps += 1
        if self._steps < self.interval:
            return None
        sign_sum = self._sign_sum
        if isinstance(sign_sum, Tensor):
            pair = torch.stack((sign_sum, sign_sum.new_tensor(float(self._count))))
        else:
            pair = torch.tensor([sign_sum, float(self._count)], dtype=torch.float32)
        total, count = reduce(pair).tolist()  # the one host sync of the interval
        self._sign_sum, self._count, self._steps = 0.0, 0, 0
        if count <= 0:
            return None
        r_t = total / count
        direction = (r_t > self.target) - (r_t < self.target)
        images = batch_size * world_size * self.interval
        self.p = min(max(self.p + direction * images / (self.ada_kimg * 1000), 0.0), 1.0)
        self.last_rt = r_t
        return r_t

    def state_dict(self) -> dict[str, Any]:
        """``p``, the last ``r_t`` and the interval's accumulators as Python floats and ints
        (reads the accumulated sum back from its device: one host sync)."""
        sign_sum = self._sign_sum
        return {
            "p": self.p,
            "last_rt": self.last_rt,
            "sign_sum": float(sign_sum.item() if isinstance(sign_sum, Tensor) else sign_sum),
            "count": self._count,
            "steps": self._steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state``; the settings stay this object's."""
        p, last_rt = float(state["p"]), state["last_rt"]
        count, steps = int(state["count"]), int(state["steps"])
        if not 0.0 <= p <= 1.0 or count < 0 or steps < 0:
            raise ValueError(f"Not an adaptive augmentation state: {state!r}.")
        self.p = p
        self.last_rt = None if last_rt is None else float(last_rt)
        self._sign_sum, self._count, self._steps = float(state["sign_sum"]), count, steps


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
