"""Shared test fixtures.

Pipelines are run for real with ``kedro run`` in a subprocess, inside a throw-away copy of
the project (its ``conf/`` and ``pyproject.toml``; the package itself is installed in the
virtual environment), so tests never touch the working tree's ``data/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_env(**extra: str) -> dict[str, str]:
    """The environment a pipeline subprocess runs with: no telemetry, no stray tracking URI."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(KEDRO_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1",
               MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
               # The venv's console scripts (mlflow, uvicorn, kedro, dvc) come first, as
               # they do for a user who activated it.
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra)
    return env


test_env.__test__ = False  # a helper, not a test, in modules that import it

# `pytest -m "not slow"` must stay quick: a test that starts a `kedro run`, a server or a
# training subprocess carries @pytest.mark.slow. The fixtures below that start one are
# checked at collection, `run_kedro` when it is called.
SLOW_FIXTURES = {"mlflow_server", "sample_images_dir"}
_current_test: dict[str, pytest.Item] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items if SLOW_FIXTURES & set(item.fixturenames)
                and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError(f"These tests start a server or a kedro run through a fixture "
                                f"but are not marked @pytest.mark.slow: {unmarked}")


@pytest.fixture(autouse=True)
def _remember_current_test(request: pytest.FixtureRequest):
    _current_test["item"] = request.node
    yield
    _current_test.pop("item", None)


def require_slow_marker(what: str) -> None:
    """Fail the running test if it starts ``what`` without being marked slow."""
    item = _current_test.get("item")
    if item is not None and item.get_closest_marker("slow") is None:
        pytest.fail(f"{item.nodeid} starts {what} but is not marked @pytest.mark.slow.")


def make_project_copy(destination: Path) -> Path:
    """Copy what ``kedro run`` needs (conf/, pyproject.toml) into ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT_ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("local"))
    (destination / "conf" / "local").mkdir(exist_ok=True)
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", destination / "pyproject.toml")
    # Kedro insists that the source folder exists; the package is imported from the venv.
    (destination / "src").mkdir(exist_ok=True)
    for layer in ("01_raw", "02_intermediate", "03_primary", "04_feature", "06_models", "08_reporting"):
        (destination / "data" / layer).mkdir(parents=True, exist_ok=True)
    return destination


def run_kedro(project: Path, *args: str, env: dict[str, str] | None = None, check: bool = True,
              timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``kedro <args>`` in ``project``; on failure (when ``check``) show its output."""
    require_slow_marker(f"`kedro {' '.join(args)}`")
    result = subprocess.run(
        [str(BIN / "kedro"), *args], cwd=project, env=env or test_env(),
        capture_output=True, text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        pytest.fail(f"kedro {' '.join(args)} failed ({result.returncode}):\n"
                    f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture
def kedro_project(tmp_path: Path) -> Path:
    """A fresh copy of the project to run pipelines in."""
    return make_project_copy(tmp_path / "project")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, log_path: Path, what: str,
                  timeout: float = 180) -> None:
    """Poll ``url`` until it answers; fail with the server's log if it dies or times out."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{what} did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.3)


def post_json(url: str, payload: dict) -> dict:
    """POST ``payload`` as JSON to ``url`` and return the JSON answer."""
    import json
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM a server started with ``start_new_session=True`` (SIGKILL after 20 s)."""
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:  # it had already died
        process.wait()
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def served_model(model_uri: str, tracking_uri: str, folder: Path) -> Iterator[str]:
    """``mlflow models serve -m model_uri`` on 127.0.0.1 (the venv's environment); yields
    its ``/invocations`` URL and stops it afterwards."""
    require_slow_marker("`mlflow models serve`")
    port = _free_port()
    with open(folder / "serve.log", "w") as log:
        server = subprocess.Popen(
            [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder, env=test_env(MLFLOW_TRACKING_URI=tracking_uri), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/ping", server, folder / "serve.log",
                          "mlflow models serve")
            yield f"http://127.0.0.1:{port}/invocations"
        finally:
            stop_process_group(server)


# The one tiny parameter set of the suite: a complete `kedro run --pipeline=train` with
# narrow networks, few steps, FID at 64 dims on 20 samples. For tests about plumbing (DVC,
# reproduce, retraining, tracking), not quality. Tests change single keys with overrides.
TINY_PARAMS = {
    "training": {"max_steps": 20, "g_width": 8, "d_width": 8, "latent_dim": 16, "log_every": 10,
                 "sample_every": 0, "checkpoint_every": 0, "eval_samples": 50},
    "evaluation": {"num_samples": 20, "fid_dims": 64, "is_splits": 2, "kid_subsets": 5,
                   "kid_subset_size": 20, "grid_size": 16},
}


def tiny_params(**overrides: object) -> str:
    """``TINY_PARAMS`` as a ``kedro run --params`` string; ``overrides`` use dotted keys,
    e.g. ``tiny_params(**{"training.max_steps": 200})``."""
    flat = {f"{section}.{key}": value for section, values in TINY_PARAMS.items()
            for key, value in values.items()}
    flat.update(overrides)
    return ",".join(f"{key}={value}" for key, value in flat.items())


TINY_TRAIN_PARAMS = tiny_params()


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real ``mlflow server`` (SQLite backend, temporary artifact root) on 127.0.0.1.

    Yields its URL; the server is stopped at the end of the test, even when it fails.
    """
    port = _free_port()
    root = tmp_path / "mlflow-server"
    root.mkdir()
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed in the finaliser below
    process = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        # MLflow 3 starts background job workers by default (GenAI jobs, ~1.6 GB and tens
        # of CPU seconds at start); the registry and tracking need none of them.
        cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=test_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", process, root / "server.log", "mlflow server")
        yield url
    finally:
        stop_process_group(process)
        log.close()


# Half the calibration images of the script's default: the build is 2x faster, and the
# tests that rely on this file check it separates noise from digits.
STANDIN_CALIBRATION_IMAGES = 32


@pytest.fixture(scope="session")
def standin_torch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME holding stand-in FID Inception weights (scripts/build_standin_inception.py),
    built once per session, where pytorch-fid and Atelier both look for the real file."""
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    try:
        from build_standin_inception import build_standin_inception
    finally:
        sys.path.remove(str(PROJECT_ROOT / "scripts"))
    torch_home = tmp_path_factory.mktemp("torch_home")
    build_standin_inception(torch_home, seed=0, calibration_images=STANDIN_CALIBRATION_IMAGES)
    return torch_home


@pytest.fixture
def standin(standin_torch_home: Path, monkeypatch: pytest.MonkeyPatch):
    """TORCH_HOME pointing at the stand-in weights; returns the loaded FIDInception (CPU)."""
    from atelier.core import metrics

    monkeypatch.setenv("TORCH_HOME", str(standin_torch_home))
    return metrics.load_inception(device="cpu")


@pytest.fixture(scope="session")
def shared_tracking_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A ``run_kedro`` environment whose MLflow store is shared by the whole session: a
    fresh SQLite store costs every new project copy ~5 s of schema migrations."""
    store = tmp_path_factory.mktemp("mlflow_store") / "mlflow.db"
    return test_env(MLFLOW_TRACKING_URI=f"sqlite:///{store}")


@pytest.fixture(scope="session")
def sample_images_dir(tmp_path_factory: pytest.TempPathFactory, shared_tracking_env) -> Path:
    """The bundled sample (1,797 digit PNGs under <label>/), written once per session by a
    real ``kedro run --pipeline=sample_data``. Copy it; don't modify it."""
    project = make_project_copy(tmp_path_factory.mktemp("sample_project") / "project")
    run_kedro(project, "run", "--pipeline=sample_data", env=shared_tracking_env)
    return project / "data" / "01_raw" / "images"
