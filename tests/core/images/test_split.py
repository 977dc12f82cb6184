"""atelier.core.images.split: the validation split."""

from __future__ import annotations

import hashlib

import torch

from atelier.core import images


def test_validation_split_depends_on_each_hash_only():
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(10_000)]
    is_val = images.assign_validation(hashes, 0.2)
    assert is_val.dtype == torch.bool
    assert 0.18 < is_val.float().mean().item() < 0.22
    more = images.assign_validation(hashes[:5_000] + ["f" * 64, "0" * 64] + hashes[5_000:], 0.2)
    assert torch.equal(more[:5_000], is_val[:5_000]) and torch.equal(more[5_002:], is_val[5_000:])
    assert more[5_000].item() is False and more[5_001].item() is True
    assert not images.assign_validation(hashes, 0.0).any()
