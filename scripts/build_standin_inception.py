"""Build a STAND-IN for pytorch-fid's FID Inception weights, for machines that cannot download them.

    python scripts/build_standin_inception.py --torch-home DIR [--seed N]

writes ``DIR/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``, the path where
pytorch-fid (``torch.hub.load_state_dict_from_url``) and Atelier look for the real file when
``TORCH_HOME=DIR``. Both then load it exactly as they would load the real one: same
architecture (pytorch-fid's ``fid_inception_v3``, 1008 classes), same state-dict keys.

It is NOT the FID network. Its numbers are not comparable with any published FID or IS, and
Atelier says so loudly wherever it reports a metric computed with it: the real file's
sha256 starts with ``6726825d``, this one's does not. It exists so that tests and offline
development exercise the real code paths (pytorch-fid's CLI included) with a network whose
features still tell images apart.

How it is made: see :mod:`atelier.core.metrics.standin`, which this script calls (the
main job builds the same stand-in into its own cache when ``evaluation.inception_weights``
is ``auto`` and the official file is out of reach).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atelier.core.metrics.inception import WEIGHTS_FILENAME
from atelier.core.metrics.standin import CALIBRATION_IMAGES, write_standin_weights


def build_standin_inception(torch_home: str | Path, seed: int = 0,
                            calibration_images: int = CALIBRATION_IMAGES) -> Path:
    """Write the stand-in where pytorch-fid looks under ``TORCH_HOME=torch_home``; return it."""
    destination = Path(torch_home) / "hub" / "checkpoints" / WEIGHTS_FILENAME
    return write_standin_weights(destination, seed, calibration_images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch-home", required=True, help="the TORCH_HOME to write into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES,
                        help="smooth random images the BatchNorm statistics are averaged over")
    args = parser.parse_args(argv)
    path = build_standin_inception(args.torch_home, args.seed, args.calibration_images)
    print(f"Wrote STAND-IN Inception weights (not the FID network; metrics computed with them "
          f"are not comparable) to {path}\n"
          f"Use them with TORCH_HOME={Path(args.torch_home).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
