"""A deterministic STAND-IN for pytorch-fid's FID Inception weights, for machines that
cannot download them.

Same architecture (pytorch-fid's ``fid_inception_v3``, 1008 classes) and state-dict keys
as the real file, so everything loads it exactly as it would load the real one; but it is
NOT the FID network. Its numbers are not comparable with any published FID or IS, and
Atelier says so wherever it reports a metric computed with it (the real file's sha256
starts with ``6726825d``, this one's does not). It lets the main job and the tests finish
offline with a network whose features still tell images apart.

How it is made, and why:

- Convolutions: seeded Kaiming-normal weights (fan-in, ReLU gain); the classifier: normal
  with std 1/sqrt(2048); BatchNorm affine weight 1, bias 0.
- BatchNorm running statistics: calibrated (in float64, rounded to float32, so that the
  file is the same on every CPU and thread count) by running the network in train mode with
  ``momentum=None`` (a cumulative average over all batches) on smooth random images
  (low-frequency noise upsampled, random brightness and contrast), fed exactly as
  pytorch-fid feeds images (bilinear resize to 299, ``2x - 1``). Without calibration a
  random network's activations drift layer after layer until the 2048 pooled features are
  near-constant and every FID is about zero.

``scripts/build_standin_inception.py`` writes it into a ``TORCH_HOME`` for pytorch-fid's own
CLI; ``evaluation.inception_weights: auto`` builds it once into the project's cache when
the official file can be neither found nor downloaded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from atelier.core.metrics.network import build_fid_inception_network
from atelier.core.storage import write_atomically

CALIBRATION_IMAGES = 64
CALIBRATION_BATCH = 32
STANDIN_SEED = 0
#: In the cached file's name: version 2 calibrates in float64 (the same file on every
#: machine); a version-1 file, built in float32 and machine-dependent, is not reused.
STANDIN_VERSION = 2


def smooth_random_images(count: int, generator: torch.Generator, size: int = 64) -> torch.Tensor:
    """``count`` images in [0, 1] (3 x size x size): noise at 2 to 16 cells per side,
    bilinearly upsampled, with random brightness and contrast; a quarter are grayscale."""
    images = []
    for _ in range(count):
        cells = 2 ** int(torch.randint(1, 5, (1,), generator=generator))
        noise = torch.rand(1, 3, cells, cells, generator=generator)
        if torch.rand(1, generator=generator) < 0.25:
            noise = noise[:, :1].expand(-1, 3, -1, -1)
        image = F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)[0]
        contrast, brightness = torch.rand(2, generator=generator)
        images.append(((image - 0.5) * (0.5 + 1.5 * contrast) + brightness).clamp(0, 1))
    return torch.stack(images)


@torch.no_grad()
def build_standin_state_dict(seed: int = STANDIN_SEED, calibration_images: int = CALIBRATION_IMAGES,
                             batch_size: int = CALIBRATION_BATCH) -> dict[str, torch.Tensor]:
    """The stand-in's state dict (see the module docstring), deterministic for a seed."""
    generator = torch.Generator().manual_seed(seed)
    network = build_fid_inception_network()
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu",
                                    generator=generator)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=1 / math.sqrt(module.in_features),
                            generator=generator)
            nn.init.zeros_(module.bias)
    # Calibrated in float64, then rounded to float32: float32 convolutions sum in an order
    # that depends on the CPU's kernels and the thread count (the same seed built files
    # with different sha256s on one machine at 1 and 2 threads), while float64's
    # differences are far below float32's rounding, so every machine builds the same file.
    network.double().train()
    for start in range(0, calibration_images, batch_size):
        images = smooth_random_images(min(batch_size, calibration_images - start), generator)
        x = F.interpolate(images.double(), size=(299, 299), mode="bilinear", align_corners=False)
        network(2 * x - 1)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1  # back to PyTorch's default; not part of the state dict
    return network.float().state_dict()


def write_standin_weights(path: str | os.PathLike, seed: int = STANDIN_SEED,
                          calibration_images: int = CALIBRATION_IMAGES) -> Path:
    """Build the stand-in and write its state dict to ``path`` atomically; return the path."""
    state_dict = build_standin_state_dict(seed, calibration_images)
    write_atomically(path, lambda handle: torch.save(state_dict, handle))
    return Path(path)


def standin_weights_path(cache_dir: str | os.PathLike) -> Path:
    """Where ``evaluation.inception_weights: auto`` keeps the stand-in under ``cache_dir``."""
    return Path(cache_dir) / f"pt_inception-STANDIN-v{STANDIN_VERSION}-seed{STANDIN_SEED}.pth"
