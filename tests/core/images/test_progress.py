"""Progress bars on the long steps: shown on a terminal, silent in CI logs (not a TTY).

On a terminal each bar ends on its final frame: the step's name, 100 %, done/total in the
bar's unit (files, images, or bytes for archive extraction), elapsed<remaining and the
rate. (The training bar: tests/core/training/test_loop.py.)
"""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from image_cases import encode, gradient
from tqdm import tqdm

from atelier.core import images

# tqdm's time field: elapsed<remaining once the total is known, elapsed alone without one.
ELAPSED, ETA_DONE = r"\d\d:\d\d", r"\d\d:\d\d<00:00"


class Terminal(io.StringIO):
    """What tqdm writes to when stderr is a terminal."""

    def isatty(self) -> bool:
        return True


def frames(shown: str, description: str) -> list[str]:
    """The frames of the bar named ``description``, in the order they were drawn."""
    return [frame.strip() for frame in re.split(r"[\r\n]", shown)
            if frame.startswith(f"{description}:")]


def assert_finished(shown: str, description: str, total: int, unit: str) -> None:
    """The bar started at 0 and ended at ``total`` of ``total``, in ``unit``."""
    drawn = frames(shown, description)
    assert drawn, f"no {description!r} bar in {shown!r}"
    assert re.fullmatch(rf"{description}: +0%\|\s*\| 0/{total} \[00:00<\?, \?{unit}/s\]",
                        drawn[0]), drawn[0]
    assert re.fullmatch(rf"{description}: 100%\|#+\| {total}/{total} "
                        rf"\[{ETA_DONE}, +[\d.]+[kM]?{unit}/s\]", drawn[-1]), drawn[-1]


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for index in range(80):  # more than the pool threshold: the parallel path counts too
        picture = gradient(16, 16, "RGB")
        picture.putpixel((0, 0), (index, 0, 0))  # 80 different files, none a duplicate
        (root / f"{index:03d}.png").write_bytes(encode(picture))
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_scanning_and_decoding_show_progress_on_a_terminal_only(folder, monkeypatch, workers):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    found = images.scan_images(folder, workers=workers)
    loaded = images.load_training_images(folder, [f.path for f in found], 8, 3, workers=workers)
    shown = terminal.getvalue()
    assert_finished(shown, "inspecting images", 80, "file")
    assert_finished(shown, "decoding images", 80, "file")
    assert len(found) == len(loaded[0]) == 80  # the bars count what was done
    # One bar after the other, each left on its own line.
    assert [line.rsplit("\r", 1)[-1].split(":")[0] for line in shown.split("\n") if line] == [
        "inspecting images", "decoding images"]

    log = io.StringIO()  # a CI log: not a terminal
    monkeypatch.setattr("sys.stderr", log)
    images.scan_images(folder, workers=workers)
    images.load_training_images(folder, [f.path for f in found], 8, 3, workers=workers)
    assert log.getvalue() == ""


def test_extraction_shows_the_bytes_written_on_a_terminal(folder, tmp_path, monkeypatch):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        for file in sorted(folder.iterdir()):
            opened.write(file, f"set/{file.name}")
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    images.extract_archive(archive, tmp_path / "out")
    written = sum(path.stat().st_size for path in (tmp_path / "out").rglob("*") if path.is_file())
    assert written == sum(path.stat().st_size for path in folder.iterdir())  # 80 PNGs, ~9 kB
    # No total is known up front: the bar counts bytes (scaled: "8.91kB"), with the speed.
    drawn = frames(terminal.getvalue(), "extracting images.zip")
    assert drawn[0] == "extracting images.zip: 0.00B [00:00, ?B/s]"
    size = re.escape(tqdm.format_sizeof(written))
    assert re.fullmatch(rf"extracting images\.zip: {size}B \[{ELAPSED}, +[\d.]+[kMG]?B/s\]",
                        drawn[-1]), drawn[-1]

    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    images.extract_archive(archive, tmp_path / "again")
    assert log.getvalue() == ""


def test_inception_passes_show_progress_on_a_terminal(standin, monkeypatch):
    import torch

    from atelier.core.metrics import extract_features

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    batches = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8).split(2)
    extract_features(standin, batches, dims=64, total=4, description="reference statistics")
    assert_finished(terminal.getvalue(), "reference statistics", 4, "img")

    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    extract_features(standin, batches, dims=64, total=4, description="reference statistics")
    assert log.getvalue() == ""
