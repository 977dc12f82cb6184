"""What a training run produces (:class:`TrainingResult`) and how the loop assembles it
(:func:`selected_result`): the selected generator, the discriminator of its step, the
histories."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atelier.core.ada import AdaptiveAugment
from atelier.core.models import Generator, GeneratorCheckpoint
from atelier.core.training.config import TrainingConfig
from atelier.core.training.parent import TrainingState
from atelier.core.training.selection import ModelSelection
from atelier.core.training.steps import recalibrate_batchnorm

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainingResult:
    """What a run produces: the selected generator (CPU, eval mode) and the histories.

    ``generator`` is the best scored one (``variant`` ``ema`` or ``raw``, from ``step``)
    when ``training.eval_every`` is on, else the EMA generator of the last step.
    ``scores`` lists every in-training evaluation (step, variant, fid, kid).
    """

    generator: Generator
    history: list[dict[str, float]]
    step: int
    resumed_from: Path | None
    device: str  # where rank 0 trained, e.g. "cpu" or "cuda:0"
    variant: str = "ema"
    scores: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    augment_p: float | None = None  # adaptive augmentation's strength at that step, when on
    # The discriminator of the selected step (of the last step without model selection)
    # and its construction: what a fine-tune of this run starts from (``training_state``).
    discriminator_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    discriminator_state: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    @property
    def checkpoint(self) -> GeneratorCheckpoint:
        """The selected generator as the typed artifact that ``load_generator`` reads."""
        return GeneratorCheckpoint.from_generator(
            self.generator, training_device=self.device, step=self.step, variant=self.variant
        )

    def training_state(self, checkpoint: GeneratorCheckpoint | None = None) -> TrainingState:
        """What a fine-tune of this run starts from: ``checkpoint`` (default
        :attr:`checkpoint`; the pipeline passes the one it registers, with class names and
        parent), the discriminator of the same step and the augmentation strength."""
        return TrainingState(checkpoint or self.checkpoint, dict(self.discriminator_config),
                             dict(self.discriminator_state), self.augment_p)



def selected_result(generator_ema: nn.Module, discriminator: nn.Module,
                    selection: ModelSelection, history: list[dict[str, float]],
                    config: TrainingConfig, resumed_from: Path | None, device: torch.device,
                    ada: AdaptiveAugment | None) -> TrainingResult:
    """The best scored generator when model selection ran, else the last EMA generator;
    with it, the discriminator (and augmentation strength) of the same step."""
    generator = copy.deepcopy(generator_ema).cpu().to(memory_format=torch.contiguous_format)
    step, variant = config.max_steps, "ema"
    discriminator_state = _cpu_state(discriminator)
    augment_p = None if ada is None else ada.p
    if selection.best is None:
        recalibrate_batchnorm(generator)  # statistics of the averaged weights, not the raw ones
    else:  # the best copy holds the statistics it was scored with
        generator.load_state_dict(selection.best["state_dict"])
        step, variant = selection.best["step"], selection.best["variant"]
        # Checkpoints written before selection kept the discriminator lack it: the last one.
        discriminator_state = selection.best.get("discriminator_state") or discriminator_state
        augment_p = selection.best.get("augment_p", augment_p)
        log.info("Selected the %s generator of step %d (%s %.5g): the best of %d evaluations.",
                 variant, step, selection.select_by, selection.best["score"], len(selection.scores))
    discriminator_config = {"architecture": config.architecture, "d_width": config.d_width,
                            "spectral_norm": config.spectral_norm,
                            "num_classes": int(getattr(discriminator, "num_classes", 0))}
    return TrainingResult(generator.eval(), history, step, resumed_from, str(device), variant,
                          list(selection.scores), augment_p, discriminator_config,
                          discriminator_state)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone().contiguous()
            for key, value in module.state_dict().items()}
