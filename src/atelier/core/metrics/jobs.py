"""Scoring shared by every rank of a multi-machine group (``torchrun -m atelier.cluster``).

:func:`score_generator_on_group` is :func:`~.scoring.score_generator` when this process is
alone; on rank 0 of a group that hands out jobs (:mod:`atelier.core.jobs`) it sends a
:class:`ScoringJob` to the other ranks, and every rank scores its share of the seeds
(:func:`~.distributed.distributed_score_generator`): the same scores to 1e-6, each rank's
Inception pass over ``1 / world size`` of the images.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from atelier.core.jobs import jobs_enabled, run_on_every_rank
from atelier.core.metrics.config import EvaluationConfig
from atelier.core.metrics.distributed import distributed_score_generator
from atelier.core.metrics.inception import FIDInception, load_evaluation_inception
from atelier.core.metrics.scoring import score_generator


@dataclass(frozen=True)
class ScoringJob:
    """One generator scored by every rank. Each rank loads the evaluation's Inception
    weights itself (every machine needs them: the official file in its torch cache, or the
    stand-in, which every machine builds alike) unless given the loaded network."""

    generator: nn.Module        # on the CPU; each rank moves its copy to its device
    reference: torch.Tensor     # uint8 reference images; each rank features its share
    config: EvaluationConfig
    seeds: Sequence[int] | None = None
    inception_score: bool = True
    description: str = "generated"

    def run(self, inception: FIDInception | None = None) -> dict:
        inception = inception or load_evaluation_inception(self.config)
        return distributed_score_generator(
            self.generator, self.reference, inception, self.config, seeds=self.seeds,
            inception_score=self.inception_score, description=self.description)


def score_generator_on_group(generator: nn.Module, reference: torch.Tensor,
                             inception: FIDInception, config: EvaluationConfig, *,
                             seeds: Sequence[int] | None = None, inception_score: bool = True,
                             description: str = "generated") -> dict:
    """:func:`~.scoring.score_generator`, by every rank of the group when there is one."""
    if not jobs_enabled():
        return score_generator(generator, reference, inception, config, seeds=seeds,
                               inception_score=inception_score, description=description)
    job = ScoringJob(copy.deepcopy(generator).cpu(), reference.cpu(), config, seeds,
                     inception_score, description)
    return run_on_every_rank(job, inception=inception)
