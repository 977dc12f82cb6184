"""pytorch-fid's FID Inception architecture, without weights: shared by the loader
(:mod:`.inception`) and the stand-in builder (:mod:`.standin`)."""

from __future__ import annotations

import torchvision
from pytorch_fid.inception import (
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE_1,
    FIDInceptionE_2,
    InceptionV3,
)

FID_DIMS = tuple(InceptionV3.BLOCK_INDEX_BY_DIM)  # (64, 192, 768, 2048)
NUM_CLASSES = 1008


def build_fid_inception_network() -> torchvision.models.Inception3:
    """pytorch-fid's ``fid_inception_v3()`` architecture (1008 classes), without its weights.

    The same patched blocks, in the same places, as ``pytorch_fid.inception.fid_inception_v3``;
    its state dict has exactly the keys of the FID weights file.
    """
    network = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=NUM_CLASSES, init_weights=False)
    network.Mixed_5b = FIDInceptionA(192, pool_features=32)
    network.Mixed_5c = FIDInceptionA(256, pool_features=64)
    network.Mixed_5d = FIDInceptionA(288, pool_features=64)
    network.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    network.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    network.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    network.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    network.Mixed_7b = FIDInceptionE_1(1280)
    network.Mixed_7c = FIDInceptionE_2(2048)
    return network
