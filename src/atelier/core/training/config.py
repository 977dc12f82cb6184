"""``TrainingConfig``: the ``training:`` parameters as a validated, frozen dataclass."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from atelier.core.augment import parse_policy
from atelier.core.models import ARCHITECTURES
from atelier.core.params import typed_fields

#: Images in a sample grid when the caller names none (``evaluation.grid_size``'s default).
DEFAULT_GRID_SIZE = 64


def _shapes_weights() -> Any:
    """Marks a field that shapes the trained weights (see ``WEIGHT_PARAMETERS``)."""
    return dataclasses.field(metadata={"shapes_weights": True})


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The ``training:`` parameters (documented in ``conf/base/parameters_training.yml``).

    Fields marked ``_shapes_weights()`` shape the trained weights: checkpoints are kept in a
    folder keyed by them and the data (:meth:`checkpoint_key`), so a changed setting starts
    fresh and the same setting resumes. The others (max_steps, device, precision, logging,
    checkpoint and evaluation cadence, model selection's ``eval_samples`` and
    ``select_by``...) may change between a run and its resumption; a resumed run whose
    selection settings changed starts its selection afresh (``ModelSelection``).
    """

    seed: int = _shapes_weights()
    architecture: str = _shapes_weights()
    device: str
    devices: int
    max_steps: int
    batch_size: int = _shapes_weights()
    latent_dim: int = _shapes_weights()
    g_width: int = _shapes_weights()
    d_width: int = _shapes_weights()
    lr_g: float = _shapes_weights()
    lr_d: float = _shapes_weights()
    beta1: float = _shapes_weights()
    beta2: float = _shapes_weights()
    loss: str = _shapes_weights()
    ema_kimg: float = _shapes_weights()
    ema_rampup: float = _shapes_weights()
    augment: str = _shapes_weights()
    augment_p: float = _shapes_weights()
    ada: bool = _shapes_weights()
    ada_target: float = _shapes_weights()
    ada_kimg: float = _shapes_weights()
    spectral_norm: bool = _shapes_weights()
    r1_gamma: float = _shapes_weights()
    r1_every: int = _shapes_weights()
    conditional: bool = _shapes_weights()
    # The model a fine-tune starts from (None: from scratch). The checkpoint key names the
    # parent by the sha256 of its training state, not by this string (an alias moves).
    init_from: str | None
    freeze_d_layers: int = _shapes_weights()
    eval_every: int
    eval_samples: int
    select_by: str
    precision: str
    compile: bool
    channels_last: str | bool
    data_on_device: str | bool
    flip: bool = _shapes_weights()
    log_every: int
    sample_every: int
    checkpoint_every: int
    keep_checkpoints: int
    checkpoint_dir: str
    resume: str
    deterministic: bool
    grid_size: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *,
                    grid_size: int = DEFAULT_GRID_SIZE) -> TrainingConfig:
        """Build and validate the config from the ``training`` parameters dict.

        ``grid_size``: images in the sample grids drawn during and after training (seeds
        ``0..grid_size-1``). It is not a training key: the pipeline passes
        ``evaluation.grid_size``, the one setting for every sample grid of a run.
        """
        for key in ("num_sample_images", "grid_size"):
            if key in params:
                raise ValueError(f"training.{key} is not a training parameter: every sample "
                                 "grid of a run, during training and after it, has "
                                 "evaluation.grid_size images; set that instead.")
        values = typed_fields("training", {**params, "grid_size": grid_size}, cls,
                              "conf/base/parameters_training.yml",
                              special={"init_from": _model_reference})
        config = cls(**values)
        config._validate()
        return config

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def checkpoint_key(self, data_hash: str, resolution: int, channels: int,
                       num_classes: int, parent: str | None = None) -> str:
        """16 hex digits naming the data, every setting that shapes the weights and the
        parent a fine-tune starts from (``parent``: its training state's sha256): the
        checkpoint folder's name (``<checkpoint_dir>/<key>/``). A fine-tune and a run from
        scratch, or fine-tunes of two parents, never resume each other."""
        shaping = {"data_hash": data_hash, "resolution": resolution, "channels": channels,
                   "num_classes": num_classes, **({"parent": parent} if parent else {}),
                   **{name: getattr(self, name) for name in WEIGHT_PARAMETERS}}
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]

    def _validate(self) -> None:
        problems = []
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            problems.append(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        for name in ("devices", "max_steps", "batch_size", "latent_dim", "g_width", "d_width",
                     "log_every", "keep_checkpoints", "grid_size", "r1_every",
                     "eval_samples"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("seed", "freeze_d_layers", "sample_every", "checkpoint_every", "eval_every",
                     "ema_kimg",
                     "ema_rampup", "r1_gamma"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if not 0 < self.ada_target < 1:
            problems.append(f"ada_target must be in (0, 1) (StyleGAN2-ADA: 0.6), got {self.ada_target}")
        if not self.ada_kimg > 0:
            problems.append(f"ada_kimg must be positive, got {self.ada_kimg}")
        if self.freeze_d_layers and not self.init_from:
            problems.append(f"freeze_d_layers is {self.freeze_d_layers} but init_from is null: "
                            "FreezeD keeps a parent's first discriminator blocks, and a run "
                            "from scratch has none to keep (set init_from, or 0)")
        if self.ada and parse_policy_or_none(self.augment) == ():
            problems.append("ada is on but augment is none: adaptive augmentation steers the "
                            "strength of training.augment's transforms; name some (e.g. "
                            "color,translation)")
        if not 0 <= self.augment_p <= 1:
            problems.append(f"augment_p must be in [0, 1], got {self.augment_p}")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name, allowed in (("loss", ("bce", "hinge")), ("resume", ("auto", "never")),
                              ("precision", ("auto", "bf16", "fp16", "fp32")),
                              ("select_by", ("kid", "fid"))):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.sample_every % self.log_every:
            problems.append(
                f"sample_every ({self.sample_every}) must be a multiple of log_every "
                f"({self.log_every}) (samples are reported with the losses), or 0 for none"
            )
        if self.batch_size % self.devices:
            problems.append(
                f"batch_size ({self.batch_size}) is the global batch; it must divide evenly "
                f"among devices ({self.devices})"
            )
        try:
            parse_policy(self.augment)
        except ValueError as error:
            problems.append(str(error).rstrip("."))
        if problems:
            raise ValueError("Invalid training parameters: " + "; ".join(problems) + ".")


def _model_reference(key: str, value: Any) -> str | None:
    """``training.init_from``: None (null, empty) or a non-empty string."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be null, a model URI (models:/NAME@ALIAS, "
                         f"models:/NAME/VERSION, runs:/RUN_ID) or a file path, got {value!r}.")
    return value.strip()


def parse_policy_or_none(policy: str) -> tuple[str, ...] | None:
    """:func:`parse_policy`'s names, or None for a policy it refuses (reported on its own)."""
    try:
        return parse_policy(policy)
    except ValueError:
        return None


#: The fields of :class:`TrainingConfig` that shape the weights (marked in the class).
WEIGHT_PARAMETERS = tuple(field.name for field in dataclasses.fields(TrainingConfig)
                          if field.metadata.get("shapes_weights"))
