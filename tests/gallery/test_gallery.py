"""The gallery (``atelier gallery``): a Gradio page that draws a registered generator.

The slow test registers two tiny generators in a SQLite store (an unconditional champion,
a class-conditional challenger), starts the command as a user would, and drives the page
in headless Chromium: the grid it shows is exactly the generator's images for the chosen
seeds, the same seed draws the same picture, the PNG download holds that grid, the walk
between two seeds ends on their images, and the class menu appears for the conditional
version. The quick tests cover the pieces without a browser.
"""

from __future__ import annotations

import ast
import io
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from browser import chromium_page
from conftest import (
    BIN,
    PROJECT_ROOT,
    _free_port,
    make_project_copy,
    stop_process_group,
    test_env,
    wait_for_http,
)
from mlflow.tracking import MlflowClient
from PIL import Image

from atelier.core.generate import generate_images, latent_vectors
from atelier.core.models import GeneratorCheckpoint, build_generator, load_generator
from atelier.gallery import cli
from atelier.gallery.drawing import draw_interpolation, draw_seed_grid, slerp
from atelier.tracking.registry import log_generator_model
from atelier.tracking.store import configured_store, project_relative_uri

MODEL = "atelier-generator"
CONFIG = {"resolution": 32, "channels": 1, "latent_dim": 16, "g_width": 8}
CONDITIONAL = {"resolution": 32, "channels": 3, "latent_dim": 16, "g_width": 8, "num_classes": 3}
CLASS_NAMES = ("cat", "dog", "owl")
PADDING = 2  # torchvision's make_grid, as atelier.core.generate.image_grid calls it


def vivid_checkpoint(config: dict, seed: int, **provenance) -> GeneratorCheckpoint:
    """An untrained generator whose images are far from flat grey (DCGAN's N(0, 0.02)
    weights draw almost uniform grey), so that "not blank" and "differs" mean something."""
    torch.manual_seed(seed)
    generator = build_generator(config)
    with torch.no_grad():
        for weight in generator.parameters():
            if weight.dim() == 4:
                weight.normal_(0, 0.25)
    return GeneratorCheckpoint.from_generator(generator, **provenance)


def tiles(grid: np.ndarray, size: int) -> list[np.ndarray]:
    """The ``size`` x ``size`` images of a grid drawn by image_grid, row by row."""
    rows, columns = ((length - PADDING) // (size + PADDING) for length in grid.shape[:2])
    corners = [(PADDING + row * (size + PADDING), PADDING + column * (size + PADDING))
               for row in range(rows) for column in range(columns)]
    return [grid[y:y + size, x:x + size] for y, x in corners]


def test_seed_grid_shows_each_seeds_image_and_depends_only_on_the_seed():
    generator = load_generator(vivid_checkpoint(CONFIG, 0))
    grid = np.asarray(draw_seed_grid(generator, [5, 6, 7, 8]))
    alone = generate_images(generator, [7]).permute(0, 2, 3, 1).numpy()[0]
    assert np.array_equal(tiles(grid, 32)[2], np.repeat(alone, 3, axis=2))
    assert np.array_equal(grid, np.asarray(draw_seed_grid(generator, [5, 6, 7, 8])))


def test_slerp_runs_from_one_latent_to_the_other_at_gaussian_radius():
    z = latent_vectors([1, 2], 64)
    path = slerp(z[0], z[1], 9)
    assert path.shape == (9, 64)
    assert torch.equal(path[0], z[0]) and torch.equal(path[-1], z[1])
    radii = path.norm(dim=1)
    low, high = sorted((float(z[0].norm()), float(z[1].norm())))
    assert all(low - 1e-4 <= float(r) <= high + 1e-4 for r in radii)  # no dip towards 0
    with pytest.raises(ValueError, match="at least 2 steps"):
        slerp(z[0], z[1], 1)


def test_interpolation_ends_on_the_two_seeds_images():
    generator = load_generator(vivid_checkpoint(CONDITIONAL, 1, class_names=CLASS_NAMES))
    walk = tiles(np.asarray(draw_interpolation(generator, 3, 10, 5, class_index=2)), 32)
    assert len(walk) == 5
    ends = generate_images(generator, [3, 10], labels=[2, 2]).permute(0, 2, 3, 1).numpy()
    # One batch of 5 against one of 2: the same latents, convolutions may round differently.
    for tile, expected in zip((walk[0], walk[-1]), ends, strict=True):
        assert np.abs(tile.astype(int) - expected.astype(int)).max() <= 2
    assert not np.array_equal(walk[1], walk[0])


def test_tracking_store_is_the_projects_unless_the_environment_says_so(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    # conf/base/mlflow.yml's embedded default, from the project root even in a subfolder.
    expected = f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"
    assert configured_store(start=PROJECT_ROOT / "src").tracking_uri == expected
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert configured_store(start=PROJECT_ROOT).tracking_uri == "http://127.0.0.1:5000"
    assert configured_store("sqlite:///x.db").tracking_uri == "sqlite:///x.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(LookupError, match="not inside a Kedro project"):
        configured_store(start=tmp_path)
    assert project_relative_uri("/p", "mlruns") == "file:///p/mlruns"
    assert project_relative_uri("/p", "sqlite:////abs/m.db") == "sqlite:////abs/m.db"


def test_gallery_command_explains_what_is_missing(monkeypatch, tmp_path, capsys):
    missing = tmp_path / "nothing.db"
    assert cli.main(["--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert "make train" in capsys.readouterr().err
    assert not missing.exists()  # a read-only page creates no store

    real_find_spec = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gradio" else real_find_spec(name, *a))
    assert cli.main([]) == 2
    assert 'pip install -e ".[gallery]"' in capsys.readouterr().err


def test_atelier_gallery_is_a_subcommand(capsys):
    from atelier.__main__ import main

    with pytest.raises(SystemExit) as exit_status:
        main(["gallery", "--help"])
    assert exit_status.value.code == 0
    usage = capsys.readouterr().out
    for option in ("--host", "--port", "--model", "--ref", "--tracking-uri"):
        assert option in usage


def test_only_the_gallery_app_imports_gradio():
    """Atelier works without the "gallery" extra: Gradio is imported by one module, which
    only the command imports, inside its function (after checking Gradio is there)."""
    importers = set()
    for path in (PROJECT_ROOT / "src" / "atelier").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "gradio" for name in names):
                importers.add(path.relative_to(PROJECT_ROOT / "src").as_posix())
            if any(name == "atelier.gallery.app" for name in names):
                assert node.col_offset > 0, f"{path} imports the Gradio app at module level"
    assert importers == {"atelier/gallery/app.py"}


def register(uri: str, checkpoint: GeneratorCheckpoint, alias: str) -> str:
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment("gallery-test")
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        version = str(log_generator_model(checkpoint, MODEL).registered_model_version)
    MlflowClient(uri).set_registered_model_alias(MODEL, alias, version)
    return version


@pytest.fixture(scope="module")
def gallery_store(tmp_path_factory) -> dict:
    """A SQLite store holding v1 (unconditional, champion) and v2 (conditional, challenger)."""
    folder = tmp_path_factory.mktemp("gallery_store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    checkpoints = {"1": vivid_checkpoint(CONFIG, 0),
                   "2": vivid_checkpoint(CONDITIONAL, 1, class_names=CLASS_NAMES)}
    assert register(uri, checkpoints["1"], "champion") == "1"
    assert register(uri, checkpoints["2"], "challenger") == "2"
    return {"uri": uri, "generators": {v: load_generator(c) for v, c in checkpoints.items()}}


def _show(page, button: str, image: str) -> np.ndarray:
    """Click ``button``, wait until ``image`` shows a new picture, and return its pixels."""
    selector = f"{image} img"
    before = page.get_attribute(selector, "src") if page.locator(selector).count() else None
    page.click(button)
    page.wait_for_function("([sel, before]) => { const img = document.querySelector(sel);"
                           " return img && img.complete && img.src !== before; }",
                           arg=[selector, before])
    with urllib.request.urlopen(page.get_attribute(selector, "src"), timeout=30) as answer:
        return np.asarray(Image.open(io.BytesIO(answer.read())).convert("RGB"))


def _set_number(page, element: str, value: int) -> None:
    field = page.locator(f"{element} input[type=number]")
    field.fill(str(value))
    field.press("Enter")


def _choose(page, menu: str, option: str) -> None:
    page.click(f"{menu} input")
    page.get_by_role("option", name=option, exact=True).click()


def _expected_grid(generator, seeds, labels=None) -> np.ndarray:
    from atelier.core.generate import image_grid

    return np.asarray(image_grid(generate_images(generator, seeds, labels=labels)))


@pytest.mark.slow
def test_gallery_page_draws_the_registered_generator_in_chromium(gallery_store, tmp_path):
    port = _free_port()
    # The project's mlflow.yml names ./mlflow.db; MLFLOW_TRACKING_URI wins, as for kedro run.
    project = make_project_copy(tmp_path / "project")
    started = time.monotonic()
    with open(tmp_path / "gallery.log", "w") as log:
        server = subprocess.Popen(
            [str(BIN / "atelier"), "gallery", "--port", str(port)], cwd=project,
            env=test_env(MLFLOW_TRACKING_URI=gallery_store["uri"]), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", server, tmp_path / "gallery.log",
                      "atelier gallery")
        print(f"atelier gallery answered after {time.monotonic() - started:.1f} s")
        _drive_gallery(f"http://127.0.0.1:{port}/", gallery_store["generators"], tmp_path)
    finally:
        stop_process_group(server)
    assert not (project / "mlflow.db").exists()


def _drive_gallery(url: str, generators: dict, folder: Path) -> None:
    offsite: list[str] = []
    with chromium_page(offsite) as page:
        page.goto(url)
        page.wait_for_selector("#about >> text=atelier-generator v1")
        assert page.input_value("#version input") == "champion (v1)"
        assert not page.is_visible("#class")  # v1 is unconditional

        _set_number(page, "#first-seed", 3)
        _set_number(page, "#count", 4)
        first = _show(page, "#generate", "#grid")
        assert np.array_equal(first, _expected_grid(generators["1"], [3, 4, 5, 6]))
        assert all(tile.std() > 10 for tile in tiles(first, 32))  # pictures, not blanks
        _set_number(page, "#first-seed", 10)
        other = _show(page, "#generate", "#grid")
        assert not np.array_equal(other, first)
        _set_number(page, "#first-seed", 3)
        again = _show(page, "#generate", "#grid")
        assert np.array_equal(again, first)  # the same seeds draw the same pictures

        with page.expect_download() as download:
            page.click("#download")
        png = Image.open(download.value.path())
        assert png.format == "PNG" and download.value.suggested_filename.endswith(".png")
        assert np.array_equal(np.asarray(png.convert("RGB")), first)

        _set_number(page, "#from-seed", 3)
        _set_number(page, "#to-seed", 10)
        _set_number(page, "#steps", 6)
        walk = tiles(_show(page, "#interpolate", "#interpolation"), 32)
        assert len(walk) == 6
        assert np.abs(walk[0].astype(int) - tiles(first, 32)[0].astype(int)).max() <= 2
        assert np.abs(walk[-1].astype(int) - tiles(other, 32)[0].astype(int)).max() <= 2

        _choose(page, "#version", "challenger (v2)")
        page.wait_for_selector("#about >> text=atelier-generator v2")
        page.wait_for_selector("#class", state="visible")
        _choose(page, "#class", "owl")
        owls = _show(page, "#generate", "#grid")
        assert np.array_equal(owls, _expected_grid(generators["2"], [3, 4, 5, 6], [2] * 4))
        page.screenshot(path=folder / "gallery.png", full_page=True)
    assert offsite == []  # fonts, scripts, analytics: all from 127.0.0.1
