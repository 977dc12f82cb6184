"""Fine-tuning: what a run keeps so a later run can start from it, and how one starts.

A registered generator alone cannot be fine-tuned: a GAN needs its discriminator too (a
fresh discriminator against a trained generator throws the generator's knowledge away in
the first few hundred steps). So every training run also writes a :class:`TrainingState`
(the pipeline's ``training_state``, logged as the run artifact ``training_state.pt``
beside the servable model, not inside it): the selected generator (the very weights the
run registers), the discriminator of that same step, and the adaptive augmentation's
strength there. A run with ``training.init_from`` starts from one (StyleGAN2-ADA's
``--resume`` for transfer learning):

- the generator and its EMA copy both start from the parent's generator, so the first
  step's generator output is the parent's for the same latent;
- the discriminator starts from the parent's; with ``training.freeze_d_layers = k`` its
  first ``k`` blocks stay frozen (FreezeD, Mo et al. 2020, "Freeze the Discriminator: a
  Simple Baseline for Fine-Tuning GANs"): the low-level features the parent learnt stay,
  and only the upper blocks adapt to the new images;
- with ``training.ada`` the augmentation strength starts at the parent's (a fine-tune on a
  few hundred images needs augmentation from its first step);
- the optimisers start fresh and the step count at 0.

:func:`check_parent` refuses a parent the run's networks cannot take, naming the key
(``training.g_width``, ``preprocessing.resolution``...). Class-conditional parents are
matched by class name: the run's classes are the parent's, in the parent's order, then its
new ones (:func:`merged_class_names`); new classes get new embedding rows, classes the new
data lacks keep theirs.

This module is torch only: the pipeline resolves ``init_from`` (a registry alias, a
version, a run or a file) through the tracking adapter and hands the state in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atelier.core.errors import ParentModelError
from atelier.core.models import GeneratorCheckpoint, build_generator
from atelier.core.storage import state_dict_sha256, write_atomically

TRAINING_STATE_FORMAT = 1

#: What a fine-tune needs of its discriminator's construction (``build_discriminator``).
DISCRIMINATOR_KEYS = ("architecture", "d_width", "spectral_norm", "num_classes")


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """The networks a fine-tune starts from: the run's selected generator (a
    :class:`GeneratorCheckpoint`, the weights it registered), the discriminator of that
    step (``discriminator``: ``DISCRIMINATOR_KEYS`` -> value; ``discriminator_state``: its
    state dict) and the augmentation strength then (``augment_p``; None without ADA)."""

    generator: GeneratorCheckpoint
    discriminator: dict[str, Any]
    discriminator_state: dict[str, torch.Tensor]
    augment_p: float | None = None

    def sha256(self) -> str:
        """The identity of the state: its weights and settings (not the file's bytes)."""
        settings = {"generator": self.generator.config, "discriminator": self.discriminator,
                    "augment_p": self.augment_p, "class_names": list(self.generator.class_names)}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
        digest.update(state_dict_sha256(self.generator.state_dict).encode())
        digest.update(state_dict_sha256(self.discriminator_state).encode())
        return digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form: plain values and tensors only (``weights_only`` loadable)."""
        return {"format": TRAINING_STATE_FORMAT, "kind": "atelier-training-state",
                "generator": self.generator.to_dict(), "discriminator": dict(self.discriminator),
                "discriminator_state": dict(self.discriminator_state),
                "augment_p": self.augment_p}

    @classmethod
    def from_dict(cls, data: Any, source: str = "the file") -> TrainingState:
        """Read the on-disk form, or a training checkpoint (``step_*.pt``: its EMA generator
        and discriminator); anything else is refused saying what it is."""
        if isinstance(data, dict) and data.get("kind") == "atelier-training-state":
            if int(data.get("format", 0)) > TRAINING_STATE_FORMAT:
                raise ParentModelError(
                    f"{source} was written by a newer Atelier (training state format "
                    f"{data['format']}; this one reads {TRAINING_STATE_FORMAT}): upgrade Atelier.")
            return cls(GeneratorCheckpoint.from_dict(data["generator"]),
                       dict(data["discriminator"]), dict(data["discriminator_state"]),
                       None if data.get("augment_p") is None else float(data["augment_p"]))
        if isinstance(data, dict) and {"generator_ema", "discriminator", "params",
                                       "generator_config"} <= set(data):
            params = data["params"]
            generator = GeneratorCheckpoint(config=dict(data["generator_config"]),
                                            state_dict=dict(data["generator_ema"]),
                                            step=int(data.get("step", 0)))
            discriminator = {"architecture": params["architecture"], "d_width": params["d_width"],
                             "spectral_norm": params["spectral_norm"],
                             "num_classes": int(data["generator_config"].get("num_classes", 0))}
            ada = data.get("ada") or {}
            return cls(generator, discriminator, dict(data["discriminator"]), ada.get("p"))
        if isinstance(data, dict) and {"config", "state_dict"} <= set(data):
            raise ParentModelError(
                f"{source} holds a generator only (data/06_models/generator.pt or a served "
                "model's file): a fine-tune needs its discriminator too. Start from the run's "
                "training_state.pt (data/06_models/training_state.pt, or the run artifact), "
                "from a training checkpoint (step_*.pt), or from the registry (models:/...).")
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ParentModelError(
            f"{source} is not an Atelier training state or training checkpoint (found "
            f"{found}). training.init_from takes models:/NAME@ALIAS, models:/NAME/VERSION, "
            "runs:/RUN_ID, or a training_state.pt / step_*.pt file written by Atelier.")

    def save(self, path: str | os.PathLike) -> None:
        write_atomically(path, lambda handle: torch.save(self.to_dict(), handle))

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainingState:
        """Read a file written by :meth:`save` (or a training checkpoint); no pickled code
        is ever run, and a file that is not one is refused clearly."""
        path = Path(path)
        if not path.is_file():
            raise ParentModelError(f"training.init_from names {path}, which is not a file.")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ParentModelError(
                f"{path} is not a readable Atelier training state ({reason}). "
                "training.init_from takes models:/NAME@ALIAS, models:/NAME/VERSION, "
                "runs:/RUN_ID, or a training_state.pt / step_*.pt file written by Atelier."
            ) from error
        return cls.from_dict(data, source=str(path))


@dataclasses.dataclass(frozen=True)
class ParentModel:
    """A :class:`TrainingState` and where it came from: ``identity`` holds ``source`` (the
    ``init_from`` given), and when known ``name``, ``version``, ``run_id``,
    ``data_version`` and ``generator_sha256``; ``training_state_sha256`` always.
    :meth:`none` (false in a boolean test) stands for a run from scratch."""

    state: TrainingState | None
    identity: dict[str, str]

    @classmethod
    def none(cls) -> ParentModel:
        """No parent: a run from scratch (``training.init_from: null``). A value, not None,
        because Kedro's datasets refuse to save None."""
        return cls(None, {})

    def __bool__(self) -> bool:
        return self.state is not None

    def describe(self) -> str:
        """``atelier-generator v3`` / ``run 0123abcd`` / the file, for cards and logs."""
        return describe_parent(self.identity)


def describe_parent(identity: dict[str, str]) -> str:
    """How cards, descriptions and the gallery name a parent."""
    if identity.get("name") and identity.get("version"):
        return f"{identity['name']} v{identity['version']}"
    if identity.get("run_id"):
        return f"run {identity['run_id']}"
    return identity.get("source", "unknown parent")


def merged_class_names(parent: GeneratorCheckpoint, class_names: Sequence[str]) -> tuple[str, ...]:
    """The fine-tune's classes: the parent's, in its order (their embedding rows carry
    over), then the run's classes the parent lacks (new rows)."""
    known = tuple(parent.class_names)
    return known + tuple(name for name in class_names if name not in known)


def check_parent(state: TrainingState, *, architecture: str, resolution: int, channels: int,
                 latent_dim: int, g_width: int, d_width: int, spectral_norm: bool,
                 conditional: bool) -> None:
    """Refuse a parent this run's networks cannot start from, naming every differing key
    and the parent's value (a fine-tune keeps its parent's networks)."""
    config = state.generator.config
    ours = {"training.architecture": architecture, "preprocessing.resolution": resolution,
            "preprocessing.channels": channels, "training.latent_dim": latent_dim,
            "training.g_width": g_width, "training.d_width": d_width,
            "training.spectral_norm": spectral_norm}
    theirs = {"training.architecture": config.get("architecture", "dcgan"),
              "preprocessing.resolution": int(config["resolution"]),
              "preprocessing.channels": int(config["channels"]),
              "training.latent_dim": int(config["latent_dim"]),
              "training.g_width": int(config["g_width"]),
              "training.d_width": int(state.discriminator["d_width"]),
              "training.spectral_norm": bool(state.discriminator["spectral_norm"])}
    differing = [f"{key} is {ours[key]!r} here but {theirs[key]!r} in the parent"
                 for key in ours if ours[key] != theirs[key]]
    if differing:
        raise ParentModelError(
            "training.init_from names a model this run's networks cannot start from: "
            + "; ".join(differing) + ". A fine-tune keeps its parent's networks: set "
            + ", ".join(f"{key}={theirs[key]}" for key in ours if ours[key] != theirs[key])
            + " (conf/finetune leaves them to you for that reason).")
    parent_conditional = int(config.get("num_classes", 0)) > 0
    if parent_conditional and not conditional:
        raise ParentModelError(
            "training.init_from names a class-conditional model but training.conditional is "
            "false: its generator needs a class for every image. Set "
            "training.conditional=true (one class per top-level folder), or start from an "
            "unconditional model.")
    if conditional and not parent_conditional:
        raise ParentModelError(
            "training.conditional is true but training.init_from names an unconditional "
            "model: it has no class embeddings to start from. Set "
            "training.conditional=false, or start from a class-conditional model.")
    if parent_conditional and not state.generator.class_names:
        raise ParentModelError(
            "training.init_from names a class-conditional model whose classes are unnamed "
            "(written before Atelier recorded class names): its classes cannot be matched to "
            "this run's by name. Retrain the parent, or start from scratch.")


def load_parent_weights(state: TrainingState, generator: nn.Module, discriminator: nn.Module,
                        generator_ema: nn.Module) -> None:
    """Copy the parent's weights into freshly built networks (G and EMA from its generator,
    D from its discriminator). Class embeddings (and their spectral-norm vectors) may have
    more rows here than in the parent (new classes): the parent's rows fill the first ones,
    the new rows keep their fresh initialisation."""
    for module, source, what in ((generator, state.generator.state_dict, "generator"),
                                 (generator_ema, state.generator.state_dict, "generator"),
                                 (discriminator, state.discriminator_state, "discriminator")):
        _load_rows(module, source, what)


def _load_rows(module: nn.Module, source: dict[str, torch.Tensor], what: str) -> None:
    target = module.state_dict()
    missing, unexpected = sorted(set(target) - set(source)), sorted(set(source) - set(target))
    if missing or unexpected:
        raise ParentModelError(
            f"The parent's {what} does not fit this run's: keys missing {missing[:5]}, "
            f"unexpected {unexpected[:5]} (a model from another Atelier version?).")
    merged = {}
    for key, value in target.items():
        parent = source[key]
        if parent.shape == value.shape:
            merged[key] = parent
        elif ("class_embedding" in key and parent.dim() == value.dim()
              and parent.shape[1:] == value.shape[1:] and parent.shape[0] < value.shape[0]):
            merged[key] = torch.cat([parent.to(value.dtype), value[parent.shape[0]:].cpu()])
        else:
            raise ParentModelError(f"The parent's {what} weight {key} has shape "
                                   f"{tuple(parent.shape)}, this run's {tuple(value.shape)}.")
    module.load_state_dict(merged)


def discriminator_blocks(discriminator: nn.Module) -> list[list[nn.Module]]:
    """The discriminator's blocks from the image up, as FreezeD counts them: DCGAN, one per
    strided convolution with its batch norm (the 4 x 4 logit convolution is the head, not a
    block); FastGAN, its down-sampling blocks."""
    if hasattr(discriminator, "blocks"):
        return [[block] for block in discriminator.blocks]
    blocks: list[list[nn.Module]] = []
    for layer in discriminator.main:
        if isinstance(layer, nn.Conv2d) and layer.stride == (2, 2):
            blocks.append([layer])
        elif blocks and isinstance(layer, nn.BatchNorm2d):
            blocks[-1].append(layer)
    return blocks


def freeze_discriminator_blocks(discriminator: nn.Module, count: int) -> list[nn.Parameter]:
    """Freeze (``requires_grad=False``) the first ``count`` blocks of
    :func:`discriminator_blocks`; their batch norms keep their parent statistics (momentum
    0: the running statistics are buffers, not parameters). With spectral normalisation the
    frozen weights' power-iteration vectors still update at every forward, so the largest
    singular value they estimate keeps converging on the frozen weight's own: the effective
    weight moves only by that estimate's refinement. Returns the frozen parameters."""
    blocks = discriminator_blocks(discriminator)
    if count > len(blocks):
        raise ParentModelError(
            f"training.freeze_d_layers is {count} but this discriminator has "
            f"{len(blocks)} blocks: set it between 0 and {len(blocks)}.")
    frozen: list[nn.Parameter] = []
    for block in blocks[:count]:
        for module in block:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
                frozen.append(parameter)
            for inner in module.modules():
                if isinstance(inner, nn.modules.batchnorm._BatchNorm):
                    inner.momentum = 0.0
    return frozen


def parent_generator(state: TrainingState) -> nn.Module:
    """The parent's generator, built and loaded (eval mode, CPU)."""
    generator = build_generator(state.generator.config)
    generator.load_state_dict(state.generator.state_dict)
    return generator.eval()
