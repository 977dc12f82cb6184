"""The registered model in its own environment: its logged code and requirements, nothing else.

The model carries a small copy of Atelier and its requirements
(:mod:`atelier.tracking.model_code`). The quick tests hold both to the truth: the copy
imports on its own, and what it imports is what the requirements name. The slow one builds
the environment ``mlflow models serve --env-manager virtualenv`` builds, from the logged
requirements alone (a fresh venv: no Atelier, no Kedro, none of this venv's packages),
loads the model from the registry there and generates images, then serves it from that
environment over HTTP.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import io
import json
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from conftest import (
    BIN,
    PROJECT_ROOT,
    _free_port,
    post_json,
    stop_process_group,
    test_env,
    wait_for_http,
)
from PIL import Image

from atelier.core.generate import generate_images
from atelier.core.models import GeneratorCheckpoint, build_generator
from atelier.tracking.model_code import (
    MODEL_DISTRIBUTIONS,
    MODEL_MODULES,
    model_requirements,
    stage_model_code,
)
from atelier.tracking.registry import log_generator_model

CONFIG = {"resolution": 32, "channels": 1, "latent_dim": 16, "g_width": 8}
SOURCE = PROJECT_ROOT / "src"
# Installing torch and its CUDA libraries into a fresh venv: ~3 min and ~5.7 GB here.
ENV_BUILD_TIMEOUT = 1800

IMPORT_STAGED = textwrap.dedent(
    """
    import json, sys
    staged, source = sys.argv[1:3]
    sys.path = [staged] + [path for path in sys.path if path != source]
    import atelier.tracking.model
    print(json.dumps({
        "atelier": sorted(module.__file__ for name, module in sys.modules.items()
                          if name.split(".")[0] == "atelier"),
        "glue": sorted(name for name in sys.modules
                       if name.split(".")[0] in ("kedro", "kedro_mlflow", "dvc")),
    }))
    """
)


@pytest.mark.slow  # a fresh interpreter imports the staged code
def test_the_staged_code_imports_on_its_own(tmp_path):
    staged = stage_model_code(tmp_path)
    result = subprocess.run([sys.executable, "-c", IMPORT_STAGED, str(tmp_path), str(SOURCE)],
                            capture_output=True, text=True, timeout=300, env=test_env())
    assert result.returncode == 0, result.stderr[-4000:]
    imported = json.loads(result.stdout)
    # Every module loaded from the copy, and every module of the copy is needed (the copy's
    # atelier/tracking/__init__.py is its own: it imports nothing).
    modules = {*MODEL_MODULES, "tracking/__init__.py"}
    assert imported["atelier"] == sorted(str(staged / module) for module in modules)
    assert {str(path.relative_to(staged)) for path in staged.rglob("*.py")} == modules
    assert imported["glue"] == []


def _third_party_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__", "atelier"}


def test_the_requirements_name_what_the_staged_code_imports(tmp_path):
    staged = stage_model_code(tmp_path)
    imported = set().union(*(_third_party_imports(staged / module) for module in MODEL_MODULES))
    assert imported == set(MODEL_DISTRIBUTIONS.values())
    providers = packages_distributions()
    for distribution, module in MODEL_DISTRIBUTIONS.items():
        assert distribution in {name.lower() for name in providers[module]}
    requirements = model_requirements()
    assert [requirement.split("~=")[0] for requirement in requirements] == list(MODEL_DISTRIBUTIONS)
    assert all("+" not in requirement for requirement in requirements)  # no local +cu130 label
    assert f"torch~={'.'.join(torch.__version__.split('.')[:2])}" in requirements


@pytest.fixture(scope="session")
def model_env_cache(pytestconfig: pytest.Config) -> Path:
    """Where the model environments are kept between sessions, one per set of logged
    requirements: pytest's cache folder (``pytest --cache-clear`` empties it)."""
    return pytestconfig.cache.mkdir("model-envs")


def _model_environment(model_dir: Path, model_uri: str, tracking_uri: str, cache: Path) -> Path:
    """The ``MLFLOW_ENV_ROOT`` holding the model's environment, built by ``mlflow models
    prepare-env --env-manager virtualenv`` unless one was built for the same
    requirements and Python before (the cache keeps only the latest: each is ~5.7 GB)."""
    logged = "".join((model_dir / name).read_text() for name in ("requirements.txt",
                                                                 "python_env.yaml"))
    root = cache / hashlib.sha256(logged.encode()).hexdigest()[:16]
    built = root / "built"
    if not built.exists():
        for stale in cache.iterdir():  # other requirements, or an interrupted build
            shutil.rmtree(stale)
        started = time.monotonic()
        result = subprocess.run(
            [str(BIN / "mlflow"), "models", "prepare-env", "-m", model_uri,
             "--env-manager", "virtualenv"],
            env=test_env(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_ENV_ROOT=str(root)),
            capture_output=True, text=True, timeout=ENV_BUILD_TIMEOUT,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        built.write_text(f"built in {time.monotonic() - started:.0f} s\n")
    print(f"model environment {root}: {built.read_text().strip()}")
    return root


IN_MODEL_ENV = textwrap.dedent(
    """
    import importlib.util, json, sys
    import mlflow, numpy as np, pandas as pd

    tracking_uri, model_uri, output = sys.argv[1:4]
    installed = {name: importlib.util.find_spec(name) is not None
                 for name in ("atelier", "kedro", "kedro_mlflow", "dvc")}
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(model_uri)
    images = model.predict(pd.DataFrame({"seed": [7, 8, 7]}))
    np.save(output, images)
    import atelier
    try:
        import atelier.pipelines
        pipelines = True
    except ModuleNotFoundError:
        pipelines = False
    print(json.dumps({
        "installed": installed, "atelier": atelier.__file__, "pipelines": pipelines,
        "glue": sorted(name for name in sys.modules if name.split(".")[0] in ("kedro", "dvc")),
        "pngs": model.predict(pd.DataFrame({"seed": [7]}), params={"format": "png"}),
    }))
    """
)


def _env_python(root: Path) -> Path:
    (python,) = root.glob("*/bin/python")
    config = (python.parents[1] / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in config
    return python


def _decode_png(encoded: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))


@contextlib.contextmanager
def _served_from_model_env(model_uri: str, tracking_uri: str, env_root: Path,
                           folder: Path) -> Iterator[str]:
    """``mlflow models serve --env-manager virtualenv`` (the environment in ``env_root``);
    yields its ``/invocations`` URL."""
    port = _free_port()
    log_path = folder / "serve-virtualenv.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager",
             "virtualenv", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=test_env(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_ENV_ROOT=str(env_root)),
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/ping", server, log_path,
                          "mlflow models serve --env-manager virtualenv", timeout=300)
            yield f"http://127.0.0.1:{port}/invocations"
        finally:
            stop_process_group(server)
    assert "already exists" in log_path.read_text()  # served from the environment built above


@pytest.mark.slow
def test_the_model_loads_and_serves_from_its_logged_requirements_alone(
        mlflow_server, model_env_cache, tmp_path):
    if shutil.which("pyenv") is None:  # never a skip: the environment is the point
        pytest.fail("MLflow's virtualenv environments take their Python from pyenv, which is "
                    "not on PATH (https://github.com/pyenv/pyenv#installation).")
    mlflow.set_tracking_uri(mlflow_server)
    torch.manual_seed(0)
    generator = build_generator(CONFIG)
    with mlflow.start_run(experiment_id=mlflow.set_experiment("model-env").experiment_id):
        info = log_generator_model(GeneratorCheckpoint.from_generator(generator), "atelier-generator")
    model_uri = f"models:/atelier-generator/{info.registered_model_version}"
    model_dir = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "model")))
    assert (model_dir / "requirements.txt").read_text().split() == model_requirements()
    expected = generate_images(generator, [7, 8, 7]).permute(0, 2, 3, 1).numpy()

    env_root = _model_environment(model_dir, model_uri, mlflow_server, model_env_cache)
    script = tmp_path / "in_model_env.py"
    script.write_text(IN_MODEL_ENV)
    environment = {key: value for key, value in test_env().items()
                   if key not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [str(_env_python(env_root)), str(script), mlflow_server, model_uri,
         str(tmp_path / "images.npy")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-6000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["installed"] == {"atelier": False, "kedro": False, "kedro_mlflow": False,
                                   "dvc": False}
    # Atelier is the model's own small copy, downloaded with it.
    assert report["atelier"].endswith("/code/atelier/__init__.py")
    assert not report["atelier"].startswith(str(PROJECT_ROOT))
    assert report["pipelines"] is False and report["glue"] == []
    images = np.load(tmp_path / "images.npy")
    assert images.dtype == np.uint8 and images.shape == (3, 32, 32, 1)
    assert np.array_equal(images, expected)
    assert np.array_equal(_decode_png(report["pngs"][0]), expected[0, ..., 0])

    with _served_from_model_env(model_uri, mlflow_server, env_root, tmp_path) as url:
        seeds = {"dataframe_split": {"columns": ["seed"], "data": [[7], [8]]}}
        served = np.asarray(post_json(url, seeds)["predictions"], dtype=np.uint8)
        assert np.array_equal(served, expected[:2])
        pngs = post_json(url, {**seeds, "params": {"format": "png"}})["predictions"]
        assert np.array_equal(np.stack([_decode_png(png) for png in pngs]), expected[:2, ..., 0])
