"""Model selection during training: score the generators, keep the best one.

GAN training often gets worse late (the discriminator overfits, the generator collapses),
so the last weights are not the best ones. Every ``training.eval_every`` steps (and at the
last step) the loop hands both generators, the EMA and the raw one, to a ``Scorer`` (an
in-training FID/KID, built by the caller: ``atelier.core.metrics.GeneratorScorer``),
reports the scores (``eval_<metric>_<variant>``) and keeps a copy of the best weights by
``training.select_by`` (``kid`` or ``fid``, lower is better). The best copy travels in
every checkpoint, so a resumed run remembers it.

Honest selection: the scorer compares generators with *training* images
(``atelier.core.metrics.selection_reference``), from seeds the evaluation never uses
(``atelier.core.metrics.SELECTION_SEED_OFFSET`` on), as StyleGAN2-ADA's in-training
metrics score against the training set. The validation split, on which the run reports
its scores and promotion compares it with the champion, plays no part in choosing the
generator, so the reported scores are not chosen on themselves.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import torch
from torch import nn

from atelier.core.training.steps import recalibrate_batchnorm

log = logging.getLogger(__name__)

VARIANTS = ("ema", "raw")


class Scorer(Protocol):
    """``scorer(generator) -> {"fid": float, "kid": float}``; lower is better."""

    def __call__(self, generator: nn.Module) -> dict[str, float]: ...


class ModelSelection:
    """The best generator so far: its step, variant, scores and a CPU copy of its weights."""

    def __init__(self, scorer: Scorer | None, eval_every: int, select_by: str,
                 samples: int | None = None) -> None:
        self.scorer = scorer if eval_every else None
        self.eval_every, self.select_by = eval_every, select_by
        # What makes two scores comparable: a resumed run with other settings starts afresh.
        self.settings = {"select_by": select_by, "samples": samples}
        self.best: dict[str, Any] | None = None
        self.scores: list[dict[str, Any]] = []

    def due(self, step: int, max_steps: int) -> bool:
        return self.scorer is not None and (step % self.eval_every == 0 or step == max_steps)

    @torch.no_grad()
    def score(self, step: int, generators: dict[str, nn.Module],
              discriminator: nn.Module | None = None,
              augment_p: float | None = None) -> dict[str, float]:
        """Score each generator (``{"ema": ..., "raw": ...}``); keep the best; return the
        scores as ``eval_<metric>_<variant>`` metrics for the report. The EMA's batch-norm
        statistics are recomputed for its averaged weights first. The best keeps, with its
        weights, this step's ``discriminator`` weights and augmentation strength: what a
        fine-tune of the selected generator starts from (``TrainingResult.training_state``)."""
        reported = {}
        for variant, generator in generators.items():
            if variant == "ema":
                recalibrate_batchnorm(generator)
            scores = {name: float(value) for name, value in self.scorer(generator).items()}
            self.scores.append({"step": step, "variant": variant, **scores})
            reported.update({f"eval_{name}_{variant}": value for name, value in scores.items()})
            value = scores[self.select_by]
            if self.best is None or value < self.best["score"]:
                state = {key: tensor.detach().cpu().clone()
                         for key, tensor in generator.state_dict().items()}
                self.best = {"step": step, "variant": variant, "score": value, "state_dict": state}
                if discriminator is not None:
                    self.best["discriminator_state"] = {
                        key: tensor.detach().cpu().clone().contiguous()
                        for key, tensor in discriminator.state_dict().items()}
                if augment_p is not None:
                    self.best["augment_p"] = float(augment_p)
        log.info("step %d: %s; best so far: %s %s at step %d (%s %.5g)", step,
                 ", ".join(f"{key} {value:.5g}" for key, value in reported.items()),
                 self.best["variant"], "generator", self.best["step"], self.select_by,
                 self.best["score"])
        return reported

    def state_dict(self) -> dict[str, Any]:
        """For checkpoints: plain values and tensors only."""
        return {"best": self.best, "scores": list(self.scores), "settings": dict(self.settings)}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Resume the selection of a checkpoint, unless it scored by other settings
        (``training.select_by``, ``training.eval_samples``): scores of two settings do not
        compare, so the selection starts afresh (the weights still resume)."""
        if not state:
            return
        if state.get("settings") != self.settings:
            log.warning("The checkpoint's model selection scored with %s, this run with %s: "
                        "selection starts afresh from this step.", state.get("settings"),
                        self.settings)
            return
        self.best, self.scores = state["best"], list(state["scores"])
