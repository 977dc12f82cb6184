"""The command line: ``python -m atelier.core.training`` or ``torchrun -m atelier.core.training``.

For torchrun (several GPUs or machines) and for a torch-only machine without Kedro; see
:mod:`atelier.core.training` for an example. Needs PyYAML to read ``--params``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from atelier.core.shards import primary_split
from atelier.core.training.config import TrainingConfig
from atelier.core.training.distributed import distributed_backend, launch_training
from atelier.core.training.loop import train_gan

if TYPE_CHECKING:
    from atelier.core.metrics import EvaluationConfig

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    """Train on a primary images file with a YAML ``training:`` section; rank 0 writes the
    selected generator (the EMA of the last step without model selection) to ``--output``
    as a ``GeneratorCheckpoint`` (read by ``load_generator``)."""
    parser = argparse.ArgumentParser(prog="python -m atelier.core.training",
                                     description="Train Atelier's DCGAN on a primary image file.")
    parser.add_argument("--data", required=True,
                        help="primary images file (data/03_primary/images.pt); when preprocessing "
                             "wrote shards it names them, and every rank streams its share")
    parser.add_argument("--params", required=True,
                        help="YAML file with a 'training:' section (conf/base/parameters_training.yml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one training parameter, e.g. --set max_steps=2000")
    parser.add_argument("--evaluation", default=None,
                        help="YAML file with an 'evaluation:' section (conf/base/parameters_"
                             "evaluation.yml): with training.eval_every on, model selection "
                             "scores with its Inception weights; without it, selection is off")
    parser.add_argument("--output", default="data/06_models/generator.pt",
                        help="where rank 0 writes the selected generator (a GeneratorCheckpoint, "
                             "read by atelier.core.models.load_generator)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        import yaml  # only this command line needs it; the library itself does not
    except ImportError:
        raise SystemExit("Reading --params needs PyYAML: pip install pyyaml") from None
    params = yaml.safe_load(Path(args.params).read_text())["training"]
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        params[key.removeprefix("training.")] = yaml.safe_load(value)
    evaluation = _evaluation_config(args.evaluation) if args.evaluation else None
    config = TrainingConfig.from_params(
        params, **({"grid_size": evaluation.grid_size} if evaluation else {}))
    primary = torch.load(args.data, map_location="cpu", weights_only=True)
    train_rows = ~primary["is_val"]
    images = primary_split(primary, "train")  # with shards, each rank streams its share
    labels = primary["class_indices"][train_rows] if config.conditional else None
    scorer = None
    if config.eval_every and args.evaluation is None:
        log.warning("training.eval_every is on but no --evaluation file was given: training "
                    "without model selection (the last EMA generator is written).")
        config = dataclasses.replace(config, eval_every=0)
    elif config.eval_every and int(os.environ.get("RANK", "0")) == 0:
        from atelier.core.metrics import GeneratorScorer

        scorer = GeneratorScorer.for_selection(evaluation, images, config.eval_samples)
    run = partial(train_gan if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
                  else launch_training, images, config, data_hash=primary["data_hash"],
                  report=_log_report, labels=labels, scorer=scorer)

    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:  # started by torchrun
        dist.init_process_group(distributed_backend(config.device))
        try:
            result = run()
        finally:
            dist.destroy_process_group()
    else:
        result = run()
    if int(os.environ.get("RANK", "0")) == 0:
        result.checkpoint.save(args.output)
        log.info("Wrote the %s generator (step %d) to %s.", result.variant, result.step,
                 args.output)


def _evaluation_config(evaluation_file: str) -> EvaluationConfig:
    """The ``evaluation:`` section of ``evaluation_file``, validated: its ``grid_size``
    sizes the sample grids, and model selection scores with its Inception settings."""
    import yaml

    from atelier.core.metrics import EvaluationConfig

    section = yaml.safe_load(Path(evaluation_file).read_text())["evaluation"]
    return EvaluationConfig.from_params(section)


def _log_report(step: int, metrics: dict[str, float], samples: torch.Tensor | None = None) -> None:
    log.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
