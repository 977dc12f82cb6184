"""Images per second: Atelier's training loop against the plain DCGAN recipe, in one run.

    .venv/bin/python benchmarks/train_throughput.py                       # CPU, 32x32, 1 channel
    .venv/bin/python benchmarks/train_throughput.py --device cuda --resolution 64 \\
        --channels 3 --batch-size 128 --steps 300 [--compile]

The plain recipe is PyTorch's ``examples/dcgan``: torchvision ``ImageFolder`` + ``DataLoader``
decoding and transforming every PNG every epoch (``--workers`` processes), fp32, Adam, a
``.item()`` per step for logging. Atelier's loop is ``train_gan`` as the training pipeline
runs it: the uint8 tensor on the device, batches indexed there, ``training.precision``
(auto: bf16 where the hardware has it), fused Adam, channels_last on GPU, optional
``torch.compile``, host syncs only at log steps, EMA. Both train the same DCGAN (widths
and latent size from conf/base/parameters_training.yml unless given) on the same images
(the bundled digits sample, or ``--data`` folder of class subfolders) at the same
resolution, batch size and step count. The first ``--warmup`` steps of each are not timed.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from torchvision import datasets, transforms

from atelier.core.training import TrainingConfig, train_gan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_recipe import train_seed_recipe  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def write_digits(folder: Path, size: int) -> None:
    """The bundled sample, as ``kedro run --pipeline=sample_data`` writes it."""
    from atelier.pipelines.sample_data.nodes import render_sample_digits

    for name, content in render_sample_digits({"image_size": size}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)


def image_transform(resolution: int, channels: int) -> transforms.Compose:
    steps = [transforms.Resize(resolution), transforms.CenterCrop(resolution)]
    if channels == 1:
        steps.append(transforms.Grayscale(1))
    else:
        steps.append(transforms.Lambda(lambda image: image.convert("RGB")))
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(0.5, 0.5)])


def plain_recipe(root: Path, args: argparse.Namespace, params: dict, device: torch.device) -> float:
    """PyTorch's examples/dcgan training loop (``seed_recipe.py``) on ImageFolder +
    DataLoader batches; returns images/s after the warm-up steps."""
    dataset = datasets.ImageFolder(str(root), transform=image_transform(args.resolution, args.channels))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.workers, drop_last=True)
    _, speed, _ = train_seed_recipe(
        lambda: (real for real, _ in loader), args.warmup + args.steps, resolution=args.resolution,
        channels=args.channels, latent_dim=params["latent_dim"], g_width=params["g_width"],
        d_width=params["d_width"], seed=params["seed"], device=device, lr=params["lr_d"],
        betas=(params["beta1"], params["beta2"]), warmup=args.warmup, log_every_step=True)
    return speed


def atelier_loop(root: Path, args: argparse.Namespace, params: dict, checkpoints: Path) -> tuple[float, str]:
    """``train_gan`` on the same images as a uint8 tensor; images/s after the warm-up."""
    # Decoding once is the preprocessing pipeline's job, not timed here.
    dataset = datasets.ImageFolder(str(root), transform=image_transform(args.resolution, args.channels))
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    images = ((images + 1) * 127.5).round().to(torch.uint8)
    config = TrainingConfig.from_params({
        **params, "device": args.device, "max_steps": args.warmup + args.steps,
        "batch_size": args.batch_size, "log_every": args.warmup, "sample_every": 0,
        "checkpoint_every": 0, "checkpoint_dir": str(checkpoints), "resume": "never",
        "compile": args.compile, "precision": args.precision, "deterministic": False,
    })
    result = train_gan(images, config, data_hash="benchmark", report=None)
    # Intervals of log_every (= warmup) steps; the first one is the warm-up.
    timed = [row for row in result.history if row["step"] > args.warmup]
    seconds = sum((row["step"] - previous["step"]) * args.batch_size / row["images_per_sec"]
                  for previous, row in zip(result.history, timed, strict=False))
    precision = {"auto": "auto"}.get(args.precision, args.precision)
    return sum(row["step"] - previous["step"] for previous, row in zip(result.history, timed,
               strict=False)) * args.batch_size / seconds, precision


def main() -> None:
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())["training"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (plain recipe)")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    parser.add_argument("--compile", action="store_true", help="torch.compile Atelier's networks")
    parser.add_argument("--g-width", type=int, default=params["g_width"])
    parser.add_argument("--d-width", type=int, default=params["d_width"])
    parser.add_argument("--latent-dim", type=int, default=params["latent_dim"])
    parser.add_argument("--architecture", default=params["architecture"], choices=["dcgan", "fastgan"],
                        help="Atelier's networks (training.architecture); the plain recipe is DCGAN")
    parser.add_argument("--data", type=Path, help="an ImageFolder root (default: the digits sample)")
    parser.add_argument("--skip-plain", action="store_true", help="time only Atelier's loop")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # Throughput of the training loop itself: no in-training model selection (it needs an
    # Inception scorer and is timed by the evaluation benchmark).
    params.update(g_width=args.g_width, d_width=args.d_width, latent_dim=args.latent_dim,
                  eval_every=0, architecture=args.architecture)
    if args.architecture == "fastgan":  # its paper's discriminator and loss (conf/fastgan)
        params.update(spectral_norm=True, loss="hinge")
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as scratch:
        root = args.data
        if root is None:
            root = Path(scratch) / "digits"
            write_digits(root, max(64, args.resolution))
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
        print(f"device: {args.device} ({name}), torch {torch.__version__}, "
              f"{torch.get_num_threads()} CPU threads")
        print(f"{args.resolution}x{args.resolution}, {args.channels} channel(s), batch {args.batch_size}, "
              f"{args.steps} timed steps after {args.warmup}, g_width {args.g_width}, "
              f"d_width {args.d_width}, latent_dim {args.latent_dim}")
        atelier, _ = atelier_loop(root, args, params, Path(scratch) / "checkpoints")
        print(f"atelier {args.architecture} (precision {args.precision}"
              f"{', compiled' if args.compile else ''}): "
              f"{atelier:,.0f} images/s")
        if not args.skip_plain:
            plain = plain_recipe(root, args, params, device)
            print(f"plain recipe (ImageFolder + DataLoader, {args.workers} workers, fp32): "
                  f"{plain:,.0f} images/s")
            print(f"speed-up: {atelier / plain:.2f}x")


if __name__ == "__main__":
    main()
