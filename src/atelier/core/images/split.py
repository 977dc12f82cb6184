"""Which images are held out for validation (the dataset's identity is
:func:`atelier.core.storage.dataset_hash`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def assign_validation(sha256s: Sequence[str], val_fraction: float) -> torch.Tensor:
    """A bool tensor marking the images held out for validation.

    An image is held out when the first 64 bits of its sha256, read as a fraction of
    2**64, fall below ``val_fraction``. Membership depends on the image's bytes alone, so
    adding or removing other images never moves it between train and validation.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    return torch.tensor([int(sha[:16], 16) / 2**64 < val_fraction for sha in sha256s],
                        dtype=torch.bool)
