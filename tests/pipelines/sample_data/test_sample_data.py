"""sample_data: 1,797 digit PNGs, deterministic bytes, and a second run rewrites nothing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import run_kedro
from PIL import Image
from sklearn.datasets import load_digits

from atelier.pipelines.sample_data.nodes import render_sample_digits


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def rendered() -> dict[str, bytes]:
    """The node's output at 64 pixels, rendered once for the module (about a second)."""
    return render_sample_digits({"image_size": 64})


def test_node_renders_every_digit_smoothly_upscaled(rendered):
    digits = load_digits()
    assert len(rendered) == 1797
    assert list(rendered)[:2] == ["0/0000.png", "1/0001.png"]
    for index in (0, 1, 500, 1796):
        name = f"{digits.target[index]}/{index:04d}.png"
        image = Image.open(io.BytesIO(rendered[name]))
        assert (image.format, image.mode, image.size) == ("PNG", "L", (64, 64))
        pixels = np.asarray(image, dtype=float)
        # Smooth: many grey levels, not 64 blocks of 17 levels (as a nearest-neighbour
        # upscale would give).
        assert len(np.unique(pixels)) > 40
        # Shrunk back to 8 x 8 it is the digit (bicubic blurs, so compare shapes).
        back = np.asarray(image.resize((8, 8), Image.Resampling.BOX), dtype=float)
        assert np.corrcoef(back.ravel(), digits.images[index].ravel())[0, 1] > 0.95
        assert pixels.max() > 200 and pixels.min() == 0  # 0-16 ink levels span 0-255
    small = render_sample_digits({"image_size": 32})
    assert Image.open(io.BytesIO(small["0/0000.png"])).size == (32, 32)


@pytest.mark.slow
def test_second_run_rewrites_nothing_and_bytes_match_in_process(sample_images_dir, rendered,
                                                                 shared_tracking_env):
    project = sample_images_dir.parents[2]
    before = snapshot(sample_images_dir)
    assert len(before) == 1797
    assert sorted({name.split("/")[0] for name in before}) == [str(d) for d in range(10)]
    run_kedro(project, "run", "--pipeline=sample_data", env=shared_tracking_env)
    assert snapshot(sample_images_dir) == before  # same inodes, same mtimes: not rewritten
    # A separate process wrote these; rendering here gives identical bytes.
    assert {name: (sample_images_dir / name).read_bytes() for name in before} == rendered
