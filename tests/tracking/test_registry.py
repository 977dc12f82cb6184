"""Registrations racing for the champion against a real ``mlflow server``
(src/atelier/tracking/registry.py, through the promotion lock of promotion.py): the registry
keeps the better model, and each version keeps the description the registry writes last.

The promotion rule itself is held to exact values in test_promotion.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from atelier.core.models import GeneratorCheckpoint, build_generator
from atelier.tracking.promotion import CHAMPION
from atelier.tracking.registry import register_generator_version

MODEL = "race-model"
CONFIG = {"resolution": 16, "channels": 1, "latent_dim": 16, "g_width": 8}
REGISTRATION = {"model_name": MODEL, "min_fid_improvement": 0.5, "on_incompatible_champion": "keep"}
LINEAGE = {"git_commit": "0123abc", "git_dirty": False, "data_version": "md5:race.dir",
           "data_hash": "race"}
# Every version's scores but its FID (FID 10.0 for version 1, then 9.0 and 8.0).
SCORES = {"inception_score": 1.5, "inception_score_std": 0.25, "kid": 0.125, "kid_std": 0.0625,
          "dims": 64, "num_samples": 20}


def _checkpoint(path, step: int) -> str:
    torch.manual_seed(step)
    GeneratorCheckpoint.from_generator(build_generator(CONFIG), step=step).save(path)
    return str(path)


RACER = textwrap.dedent(
    """
    import json, pathlib, sys, time
    from contextlib import contextmanager

    import mlflow
    from mlflow.tracking import MlflowClient

    from atelier.core.models import GeneratorCheckpoint
    from atelier.tracking import promotion
    from atelier.tracking.registry import register_generator_version

    uri, weights, metrics, lineage, registration, role, marker = sys.argv[1:8]
    metrics, lineage, registration = (json.loads(arg) for arg in (metrics, lineage, registration))
    marker = pathlib.Path(marker)
    read_champion, take_lock = promotion.current_champion_version, promotion.promotion_lock

    def read_then_dawdle(client, model_name):
        # The slow racer reads the champion inside the lock, tells the fast one, then
        # dawdles before it writes: without the lock the fast racer would promote in
        # between and then be overwritten by this worse model.
        result = read_champion(client, model_name)
        marker.touch()
        time.sleep(3)
        return result

    @contextmanager
    def lock_once_the_slow_racer_has_read(client, model_name):
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with take_lock(client, model_name):
            yield

    if role == "slow":
        promotion.current_champion_version = read_then_dawdle
    else:
        promotion.promotion_lock = lock_once_the_slow_racer_has_read
    # Both were evaluated side by side with version 1 (FID 10.0 in that evaluation). When
    # the champion changed meanwhile, the new one is scored again: here its score on the
    # same images is the FID it was registered with (the pipeline scores it with Inception,
    # see test_promotion.py).
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)

    def rescore(champion):
        name = registration["model_name"]
        return {"version": champion, "fid": float(client.get_model_version(name, champion).tags["fid"])}

    with mlflow.start_run(experiment_id=mlflow.set_experiment("race").experiment_id):
        record = register_generator_version(GeneratorCheckpoint.load(weights), metrics, lineage,
                                            registration, rescore)
    print(json.dumps(record))
    """
)


def _expected_description(verdict: str, fid: str, reason: str, step: int, run) -> str:
    """The description registry.py leaves on a version (``version_description``), with this
    test's values written out."""
    card = f"#/experiments/{run.experiment_id}/runs/{run.run_id}/artifactPath/model_card.md"
    return "\n".join([
        f"**{verdict}** · FID {fid} · KID 0.1250 ± 0.0625 · IS 1.5000 ± 0.2500",
        "",
        f"- decision: {reason}",
        "- data version: `md5:race.dir`",
        f"- weights: ema generator of step {step}",
        f"- model card: [model_card.md]({card}) (`runs:/{run.run_id}/model_card.md`)",
    ])


@pytest.mark.slow
def test_racing_registrations_leave_the_best_champion(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server)
    try:
        with mlflow.start_run(experiment_id=mlflow.set_experiment("race").experiment_id):
            first = register_generator_version(
                GeneratorCheckpoint.load(_checkpoint(tmp_path / "first.pt", 100)),
                {"fid": 10.0, **SCORES, "champion": None}, LINEAGE, REGISTRATION)
    finally:
        mlflow.set_tracking_uri(previous)
    assert (first["version"], first["promote"]) == (1, True)

    script, marker = tmp_path / "racer.py", tmp_path / "slow-racer-has-read"
    script.write_text(RACER)
    racers = [
        subprocess.Popen(
            [sys.executable, str(script), mlflow_server, _checkpoint(tmp_path / f"{role}.pt", step),
             json.dumps({"fid": fid, **SCORES, "champion": {"version": "1", "fid": 10.0}}),
             json.dumps(LINEAGE), json.dumps(REGISTRATION), role, str(marker)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for fid, role, step in ((9.0, "slow", 200), (8.0, "fast", 300))
    ]
    outputs = [racer.communicate(timeout=300) for racer in racers]
    for racer, (_, err) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, err
    worse, good = (json.loads(out.splitlines()[-1]) for out, _ in outputs)
    worse_version, good_version = str(worse["version"]), str(good["version"])
    assert {worse_version, good_version} == {"2", "3"}

    champion = client.get_model_version_by_alias(MODEL, CHAMPION)
    assert champion.version == good_version
    assert champion.tags["fid"] == "8.0"
    # The lock is released: no lock entry is left behind.
    assert [m.name for m in client.search_registered_models()] == [MODEL]

    # The worse model took the champion first (beside version 1), so the better one was
    # scored again beside it before winning. Each decision, as the registry leaves it on
    # its version, with the run's tags saying the same.
    reasons = {
        "1": "no champion yet; FID 10.0000",
        worse_version: "FID 9.0000 beats the champion's 10.0000 by 1.0000 (>= min_fid_improvement "
                       "0.5), scored side by side with champion version 1",
        good_version: "FID 8.0000 beats the champion's 9.0000 by 1.0000 (>= min_fid_improvement "
                      f"0.5), scored side by side with champion version {worse_version}",
    }
    for record, fid, step in ((first, "10.0000", 100), (worse, "9.0000", 200), (good, "8.0000", 300)):
        version = str(record["version"])
        assert (record["promote"], record["reason"]) == (True, reasons[version])
        run = client.get_run(record["run_id"])
        assert client.get_model_version(MODEL, version).description == _expected_description(
            "promoted to champion", fid, reasons[version], step, run.info)
        assert run.data.tags["registration.version"] == version
        assert run.data.tags["registration.promoted"] == "true"
        assert run.data.tags["registration.reason"] == reasons[version]
    tags = client.get_model_version(MODEL, good_version).tags
    assert (tags["champion_version_scored"], tags["champion_fid"]) == (worse_version, "9.0")
    tags = client.get_model_version(MODEL, worse_version).tags
    assert (tags["champion_version_scored"], tags["champion_fid"]) == ("1", "10.0")
