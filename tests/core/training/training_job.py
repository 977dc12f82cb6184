"""A training run in its own process, for the tests that kill, signal or distribute training.

    python training_job.py PARAMS_JSON DATA_PT OUT_PT [--signal-at STEP --signal KILL|TERM]
                           [--rank R --world-size W --port P]

Trains with ``train_gan`` on ``DATA_PT`` (a uint8 tensor, or a sharded dataset's folder:
its training split is streamed), sends itself the signal from
the report callback at ``--signal-at`` (a log step), and saves the EMA generator's state
dict to ``OUT_PT``. With ``--world-size`` > 1 it first joins a gloo group.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal

import torch
import torch.distributed as dist

from atelier.core.shards import ShardedImages
from atelier.core.training import TrainingConfig, train_gan

parser = argparse.ArgumentParser()
parser.add_argument("params")
parser.add_argument("data")
parser.add_argument("out")
parser.add_argument("--signal-at", type=int)
parser.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
parser.add_argument("--rank", type=int, default=0)
parser.add_argument("--world-size", type=int, default=1)
parser.add_argument("--port", type=int)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)

# One thread for tiny models; with several ranks, the count launch_training gives each.
torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.world_size) if args.world_size > 1 else 1)
if args.world_size > 1:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}",
                            rank=args.rank, world_size=args.world_size)


def report(step: int, metrics: dict, samples=None) -> None:
    if step == args.signal_at:
        os.kill(os.getpid(), getattr(signal, f"SIG{args.signal}"))


config = TrainingConfig.from_params(json.loads(open(args.params).read()))
images = (ShardedImages.open(args.data, "train") if os.path.isdir(args.data)
          else torch.load(args.data, weights_only=True))
result = train_gan(images, config, data_hash="0123456789abcdef", report=report)
torch.save({"generator_ema": result.generator.state_dict(), "history": result.history,
            "resumed_from": str(result.resumed_from)}, args.out)
if dist.is_initialized():
    dist.destroy_process_group()
