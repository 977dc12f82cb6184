"""``atelier export onnx`` (atelier.export_cli, atelier.tracking.export) and
``registration.onnx``: a generator file, a registered version by alias or number, and a run
exported to ONNX; what a real ``kedro run`` logs beside the pyfunc model and links from the
model card; the refusals, each with its message."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
import torch
from conftest import BIN, make_project_copy, run_kedro, test_env, tiny_params
from digit_cases import digits, write_pngs
from mlflow.tracking import MlflowClient

from atelier import export_cli
from atelier.core.models import Generator, GeneratorCheckpoint
from atelier.tracking.registry import register_generator_version

MODEL = "atelier-generator"


@pytest.fixture
def generator_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "generator.pt"
    GeneratorCheckpoint.from_generator(Generator(32, 1, 8, 4)).save(path)
    return path


def _export(capsys, *args: str) -> tuple[int, str, str]:
    code = export_cli.main(["onnx", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_seed_lists_are_ranges_and_single_seeds():
    assert export_cli.parse_seeds("0-63") == list(range(64))
    assert export_cli.parse_seeds("0-2,10, 20-21") == [0, 1, 2, 10, 20, 21]
    for text, message in (("a-b", "not a list of seeds"), ("5-1", "runs backwards")):
        with pytest.raises(Exception, match=message):
            export_cli.parse_seeds(text)


def test_a_generator_file_exports_with_its_seed_latents(generator_file, tmp_path, capsys):
    from atelier.__main__ import main

    with pytest.raises(SystemExit) as exit_status:
        main(["export", "onnx", str(generator_file), str(tmp_path / "out.onnx"), "--seeds", "0-3,9"])
    assert exit_status.value.code == 0
    out = capsys.readouterr().out
    assert f"{generator_file} -> {tmp_path / 'out.onnx'}" in out
    assert "opset 15" in out and "checked against PyTorch on 5 latents" in out
    onnx.checker.check_model(onnx.load(tmp_path / "out.onnx"))
    assert json.loads((tmp_path / "out.latents.json").read_text())["seeds"] == [0, 1, 2, 3, 9]


def test_an_existing_output_is_refused_with_the_flag_that_replaces_it(generator_file, tmp_path,
                                                                     capsys):
    (tmp_path / "out.onnx").write_text("keep me")
    code, _, err = _export(capsys, generator_file, tmp_path / "out.onnx")
    assert code == 2 and "out.onnx exists already" in err and "--force" in err
    assert (tmp_path / "out.onnx").read_text() == "keep me"
    assert "Traceback" not in err
    code, _, _ = _export(capsys, generator_file, tmp_path / "out.onnx", "--force")
    assert code == 0 and onnx.load(tmp_path / "out.onnx").graph.output[0].name == "image"


def test_a_generator_too_old_and_a_source_that_is_not_there_are_explained(tmp_path, capsys):
    torch.save({"main.0.weight": torch.zeros(3)}, tmp_path / "old.pt")
    code, _, err = _export(capsys, tmp_path / "old.pt", tmp_path / "a.onnx")
    assert code == 2 and "is too old to export: it has no 'config' and no 'state_dict'" in err
    code, _, err = _export(capsys, tmp_path / "nope.pt", tmp_path / "a.onnx")
    assert code == 2 and "names no file and is not a model URI" in err
    assert "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID" in err
    missing = tmp_path / "none.db"
    code, _, err = _export(capsys, f"models:/{MODEL}@champion", tmp_path / "a.onnx",
                           "--tracking-uri", f"sqlite:///{missing}")
    assert code == 2 and "does not exist yet" in err and not missing.exists()
    assert not (tmp_path / "a.onnx").exists()


def _write_digits(project, per_digit: int = 20) -> None:
    from sklearn.datasets import load_digits

    targets = load_digits().target
    for digit in range(10):
        indices = np.flatnonzero(targets == digit)[:per_digit]
        write_pngs(project / "data/01_raw/images" / str(digit), digits(indices))


def _pixels(session: onnxruntime.InferenceSession, sidecar: dict) -> np.ndarray:
    feed = {"latent": np.asarray(sidecar["latents"], dtype=np.float32)}
    if "labels" in sidecar:
        feed["label"] = np.asarray(sidecar["labels"], dtype=np.int64)
    image = session.run(["image"], feed)[0]
    return np.rint((np.clip(image, -1, 1) + 1) * 127.5).astype(np.uint8)


@pytest.mark.slow
def test_registration_logs_the_onnx_export_and_the_cli_reexports_any_version(
        tmp_path, standin_torch_home, capsys):
    project = make_project_copy(tmp_path / "project")
    _write_digits(project)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = test_env(MLFLOW_TRACKING_URI=uri, TORCH_HOME=str(standin_torch_home))
    run_kedro(project, "run", "--pipeline=train",
              f"--params={tiny_params(**{'training.conditional': True})}", env=env)

    # 1. registration.onnx (on by default): both files in the run, tagged, linked by the card.
    record = json.loads((project / "data/08_reporting/registration.json").read_text())
    run_id, client = record["run_id"], MlflowClient(uri)
    assert record["onnx_uri"] == f"runs:/{run_id}/onnx/generator.onnx"
    assert record["onnx_latents_uri"] == f"runs:/{run_id}/onnx/generator.latents.json"
    assert {a.path for a in client.list_artifacts(run_id, "onnx")} == {
        "onnx/generator.onnx", "onnx/generator.latents.json"}
    assert client.get_model_version(MODEL, "1").tags["onnx_uri"] == record["onnx_uri"]
    card = (project / "data/08_reporting/model_card.md").read_text()
    assert "## Outside Python (ONNX)" in card
    assert f"[onnx/generator.onnx](onnx/generator.onnx) (`{record['onnx_uri']}`)" in card
    assert f"mlflow artifacts download -u {record['onnx_uri']}" in card
    assert Path(client.download_artifacts(run_id, "model_card.md", str(tmp_path))).read_text() == card

    # 2. The logged file outside PyTorch: seed i's latent gives the served model's image.
    logged = tmp_path / "logged"
    mlflow.artifacts.download_artifacts(f"runs:/{run_id}/onnx", dst_path=str(logged),
                                        tracking_uri=uri)
    model = onnx.load(logged / "onnx/generator.onnx")
    onnx.checker.check_model(model, full_check=True)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert metadata["generator_sha256"] == client.get_run(run_id).data.tags["generator_sha256"]
    assert json.loads(metadata["class_names"]) == [str(digit) for digit in range(10)]
    sidecar = json.loads((logged / "onnx/generator.latents.json").read_text())
    assert sidecar["seeds"] == list(range(64)) and sidecar["labels"] == [s % 10 for s in range(64)]
    pixels = _pixels(onnxruntime.InferenceSession(str(logged / "onnx/generator.onnx")), sidecar)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        served = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(
            pd.DataFrame({"seed": sidecar["seeds"]}))
    finally:
        mlflow.set_tracking_uri(previous)
    assert np.abs(pixels.astype(int) - served.transpose(0, 3, 1, 2).astype(int)).max() <= 1

    # 3. `atelier export onnx` by alias (the console script), and by run and version number.
    result = subprocess.run(
        [str(BIN / "atelier"), "export", "onnx", f"models:/{MODEL}@champion",
         str(tmp_path / "champion.onnx"), "--seeds", "0-63", "--tracking-uri", uri],
        capture_output=True, text=True, env=test_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"models:/{MODEL}@champion (version 1) -> " in result.stdout
    assert json.loads((tmp_path / "champion.latents.json").read_text()) == sidecar
    champion = onnxruntime.InferenceSession(str(tmp_path / "champion.onnx"))
    assert np.array_equal(_pixels(champion, sidecar), pixels)
    mlflow.set_tracking_uri(uri)  # for the registration of step 5 (the CLI sets it too)
    try:
        for source in (f"runs:/{run_id}", f"models:/{MODEL}/1"):
            out = tmp_path / f"{source.split(':')[0]}.onnx"
            assert _export(capsys, source, out, "--tracking-uri", uri)[0] == 0
            assert np.array_equal(_pixels(onnxruntime.InferenceSession(str(out)), sidecar), pixels)

        # 4. URIs that do not resolve: said so, with what is there.
        for source, message in (
                (f"models:/{MODEL}/99", f"'99' is neither an alias nor a version of {MODEL} "
                                        "(known: champion, challenger, 1)"),
                ("models:/no-such-model@champion", "No registered model 'no-such-model'"),
                ("runs:/0123456789abcdef0123456789abcdef",
                 "does not resolve in the tracking store")):
            code, _, err = _export(capsys, source, tmp_path / "x.onnx", "--tracking-uri", uri)
            assert code == 2 and message in err and "Traceback" not in err, err
        assert not (tmp_path / "x.onnx").exists()

        # 5. registration.onnx: false logs no ONNX file, tags none and the card has no link.
        with mlflow.start_run(experiment_id=mlflow.set_experiment("onnx-off").experiment_id):
            off = register_generator_version(
                GeneratorCheckpoint.from_generator(Generator(32, 1, 8, 4)), {"fid": 1.0}, {},
                {"model_name": "onnx-off", "min_fid_improvement": 0.5,
                 "on_incompatible_champion": "keep", "onnx": False})
        assert "onnx_uri" not in off and not client.list_artifacts(off["run_id"], "onnx")
        assert "onnx_uri" not in client.get_model_version("onnx-off", off["version"]).tags
    finally:
        mlflow.set_tracking_uri(previous)
