"""``EvaluationConfig``: the ``evaluation:`` parameters as a validated, frozen dataclass, and
the seeds that scoring draws from.

Every scorer (model selection during training, the evaluation, the champion beside it,
per-class scores, the metrics CLI and the benchmarks) takes its settings from one
``EvaluationConfig``, built by :meth:`EvaluationConfig.from_params` from
``params:evaluation`` before any node runs (``atelier.hooks.PreflightHook``), so a bad value
(``evaluation.is_splits=0``, ``evaluation.fid_dims=100``) stops the run at once, naming
the key, instead of after training.

Seeds. The evaluation scores the images of seeds ``seed_offset .. seed_offset +
num_samples - 1``. Model selection during training draws from
:data:`SELECTION_SEED_OFFSET` on, a range the evaluation's seeds may not enter, and scores
against training images (``atelier.core.training.selection``), never the validation split:
the generator kept is not chosen on the images and seeds its reported scores, and
promotion's comparison, are computed from.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from atelier.core.metrics.network import FID_DIMS
from atelier.core.params import typed_fields

#: Model selection during training generates its images from seeds ``SELECTION_SEED_OFFSET,
#: SELECTION_SEED_OFFSET + 1, ...``, a range the evaluation's seeds may not enter, so that
#: the generator kept is never chosen on the images its reported scores are computed from.
SELECTION_SEED_OFFSET = 2**31

_SOURCE = "conf/base/parameters_evaluation.yml"


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """The ``evaluation:`` parameters (documented in ``conf/base/parameters_evaluation.yml``)."""

    num_samples: int = 500
    fid_dims: int = 2048
    is_splits: int = 10
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    batch_size: int = 50
    device: str = "auto"
    inception_weights: str = "auto"
    reference_cache_dir: str | None = "data/04_feature"
    seed_offset: int = 1_000_000
    grid_size: int = 64

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EvaluationConfig:
        """Build and validate the config from the ``evaluation`` parameters dict."""
        if isinstance(params, EvaluationConfig):
            return params
        values = typed_fields("evaluation", params, cls, _SOURCE, special={
            "reference_cache_dir": lambda key, value: (None if value in (None, "", "null")
                                                       else str(value)),
            "inception_weights": lambda key, value: "auto" if value is None else str(value)})
        config = cls(**values)
        config._validate()
        return config

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def seeds(self, count: int | None = None) -> range:
        """The evaluation's seeds: ``seed_offset``, ``seed_offset + 1``, ... (``num_samples``
        of them unless ``count`` says otherwise)."""
        return range(self.seed_offset, self.seed_offset + (self.num_samples if count is None
                                                            else count))

    def _validate(self) -> None:
        problems = []
        for name in ("num_samples", "kid_subset_size"):
            if getattr(self, name) < 2:
                problems.append(f"{name} must be at least 2 (FID and KID need two images), "
                                f"got {getattr(self, name)}")
        for name in ("is_splits", "kid_subsets", "batch_size", "grid_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.is_splits > self.num_samples:
            problems.append(f"is_splits ({self.is_splits}) must not exceed num_samples "
                            f"({self.num_samples}): each split needs at least one image")
        if self.fid_dims not in FID_DIMS:
            problems.append(f"fid_dims must be one of {FID_DIMS} (pytorch-fid's feature blocks), "
                            f"got {self.fid_dims}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            problems.append(f"device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        if self.seed_offset < 0:
            problems.append(f"seed_offset must be 0 or more, got {self.seed_offset}")
        if self.seed_offset + max(self.num_samples, self.grid_size) > SELECTION_SEED_OFFSET:
            problems.append(f"seed_offset + num_samples must stay below {SELECTION_SEED_OFFSET} "
                            "(the seeds from there on are model selection's)")
        if not self.inception_weights.strip():
            problems.append("inception_weights must be auto, official or a path, got ''")
        if problems:
            raise ValueError("Invalid evaluation parameters: " + "; ".join(
                f"evaluation.{problem}" for problem in problems) + f". Fix them in {_SOURCE} "
                "or in --params.")
