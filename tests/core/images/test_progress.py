"""Progress bars on the long steps: shown on a terminal, silent in CI logs (not a TTY)."""

from __future__ import annotations

import io
import zipfile

import pytest
from image_cases import encode, gradient

from atelier.core import images


class Terminal(io.StringIO):
    """What tqdm writes to when stderr is a terminal."""

    def isatty(self) -> bool:
        return True


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
    images.load_training_images(folder, [f.path for f in found], 8, 3, workers=workers)
    shown = terminal.getvalue()
    assert "inspecting images" in shown and "80/80" in shown
    assert "decoding images" in shown

    log = io.StringIO()  # a CI log: not a terminal
    monkeypatch.setattr("sys.stderr", log)
    images.scan_images(folder, workers=workers)
    assert log.getvalue() == ""


def test_extraction_shows_the_bytes_written_on_a_terminal(folder, tmp_path, monkeypatch):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        for file in sorted(folder.iterdir()):
            opened.write(file, f"set/{file.name}")
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    images.extract_archive(archive, tmp_path / "out")
    assert "extracting images.zip" in terminal.getvalue()


def test_inception_passes_show_progress_on_a_terminal(standin, monkeypatch):
    import torch

    from atelier.core.metrics import extract_features

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    batches = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8).split(2)
    extract_features(standin, batches, dims=64, total=4, description="reference statistics")
    assert "reference statistics" in terminal.getvalue() and "4/4" in terminal.getvalue()
