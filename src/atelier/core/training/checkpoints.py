"""Training checkpoints: written atomically, pruned, and chosen for resumption.

A run's checkpoints live in ``<training.checkpoint_dir>/<key>/step_<step>.pt``, where the
key (:meth:`TrainingConfig.checkpoint_key`) names the data and every parameter that shapes
the weights: a changed setting starts a new training on its own, the same setting resumes.
Each holds the weights of G, D and the EMA generator, both optimizers and grad scalers,
the best generator so far (model selection), the step, the parameters and the loss
history; every value loads with ``torch.load(weights_only=True)``, so no pickled code is
ever run. No RNG state is stored: every draw in the loop comes from a stream reseeded from
(seed, rank, step or epoch), so a resumed run draws what an uninterrupted one would have.

A file that cannot be read (truncated, foreign, not a checkpoint) is reported by name and
skipped: ``resume: auto`` continues from the newest readable one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from atelier.core.errors import CheckpointMismatchError, CheckpointUnreadableError
from atelier.core.storage import write_atomically
from atelier.core.training.config import WEIGHT_PARAMETERS, TrainingConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


def checkpoint_to_resume(directory: Path, config: TrainingConfig, generator_config: dict,
                          rank: int) -> Path | None:
    """The checkpoint this run continues from (rank 0 decides; the others follow)."""
    chosen: list[Path | None] = [None]
    if rank == 0:
        chosen[0] = _newest_matching_checkpoint(directory, config, generator_config)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(chosen, src=0)
    return chosen[0]


def _newest_matching_checkpoint(directory: Path, config: TrainingConfig,
                                generator_config: dict) -> Path | None:
    existing = sorted(directory.glob("step_*.pt"))
    if config.resume == "never":
        if existing:
            log.info("training.resume is 'never': removing %d old checkpoint(s) from %s.",
                     len(existing), directory)
        for path in existing:
            path.unlink()
        return None
    newest, checkpoint = _newest_readable(existing)
    if newest is None:
        return None
    if int(checkpoint.get("format", CHECKPOINT_FORMAT)) > CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"Refusing to resume from {newest}: it was written by a newer Atelier (checkpoint "
            f"format {checkpoint['format']}; this one reads format {CHECKPOINT_FORMAT}). "
            "Upgrade Atelier to continue it, or set training.resume=never to start over."
        )
    ours = {**{key: getattr(config, key) for key in WEIGHT_PARAMETERS}, **generator_config}
    theirs = {**checkpoint["params"], **checkpoint["generator_config"]}
    differences = [f"{key}={theirs.get(key)!r} there, {value!r} now"
                   for key, value in ours.items() if theirs.get(key) != value]
    if differences:
        raise CheckpointMismatchError(
            f"Refusing to resume from {newest}: it was written with different parameters ("
            + "; ".join(differences) + "). To train from scratch with the new parameters, set "
            "training.resume=never (this deletes the checkpoints in that folder), or set "
            "training.checkpoint_dir to another folder."
        )
    if checkpoint["step"] > config.max_steps:
        raise CheckpointMismatchError(
            f"The newest checkpoint, {newest}, is at step {checkpoint['step']}, past "
            f"training.max_steps={config.max_steps}. Raise max_steps to continue from it, or "
            "set training.resume=never to start over."
        )
    return newest


def _newest_readable(paths: list[Path]) -> tuple[Path | None, dict[str, Any]]:
    """The newest of ``paths`` that reads as a checkpoint, and its header; unreadable ones
    are reported by name and passed over."""
    for path in reversed(paths):
        try:
            return path, _read_checkpoint_header(path)
        except CheckpointUnreadableError as error:
            log.warning("%s Falling back to the checkpoint before it.", error)
    return None, {}


def _read_checkpoint_header(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, memory-mapped (only step and parameters are read)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if not isinstance(checkpoint, dict):
            raise TypeError(f"it holds a {type(checkpoint).__name__}, not a dict")
        missing = {"step", "params", "generator_config"} - set(checkpoint)
        if missing:
            raise ValueError(f"it lacks {sorted(missing)}")
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointUnreadableError(
            f"Cannot resume from {path}: it is not a readable Atelier training checkpoint "
            f"({reason}). Delete or move it away; training resumes from the newest readable "
            "checkpoint of this setting, or starts over when there is none."
        ) from error
    return checkpoint


def save_checkpoint(directory: Path, step: int, states: dict[str, Any], config: TrainingConfig,
                     generator_config: dict, data_hash: str,
                     history: list[dict[str, float]]) -> Path:
    """Write ``step_<step>.pt`` atomically; every value loads with ``weights_only=True``."""
    path = directory / f"step_{step:08d}.pt"
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "params": config.as_dict(),
        "generator_config": dict(generator_config),
        "data_hash": data_hash,
        **states,
        "history": list(history),
    }
    write_atomically(path, lambda handle: torch.save(checkpoint, handle))
    return path


def prune_checkpoints(directory: Path, keep: int) -> None:
    for old in sorted(directory.glob("step_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
