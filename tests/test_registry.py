"""Promotion rule and the promotion lock, against a real ``mlflow server``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from atelier.tracking.registry import CHAMPION, decide_promotion, promote_if_better


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "promote"),
    [
        (30.0, None, 0.5, True),   # no champion yet: always promoted
        (29.0, 30.0, 0.5, True),   # beats by 1.0 >= 0.5
        (29.5, 30.0, 0.5, True),   # beats by exactly the margin
        (29.8, 30.0, 0.5, False),  # better, but not by enough
        (31.0, 30.0, 0.0, False),  # worse
        (float("nan"), None, 0.5, False),  # a broken evaluation never wins
    ],
)
def test_decide_promotion(candidate, champion, margin, promote):
    decision = decide_promotion(candidate, champion, margin)
    assert decision.promote is promote
    assert decision.reason


def _new_version(client: MlflowClient, name: str, fid: float) -> str:
    run = client.create_run(experiment_id="0")
    version = client.create_model_version(name, source=f"runs:/{run.info.run_id}/generator",
                                          run_id=run.info.run_id).version
    client.set_model_version_tag(name, version, "fid", str(fid))
    return version


RACER = textwrap.dedent(
    """
    import pathlib, sys, time
    from mlflow.tracking import MlflowClient
    from atelier.tracking import registry

    uri, name, version, fid, role, marker = sys.argv[1:7]
    marker = pathlib.Path(marker)
    read_champion = registry.champion_fid

    def read_then_dawdle(client, model_name):
        # The slow racer reads the champion, tells the fast one, then dawdles before it
        # writes: without the lock the fast racer would promote in between and then be
        # overwritten by this worse model.
        result = read_champion(client, model_name)
        marker.touch()
        time.sleep(3)
        return result

    if role == "slow":
        registry.champion_fid = read_then_dawdle
    else:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    decision = registry.promote_if_better(MlflowClient(uri), name, version, float(fid), 0.5)
    print(decision.promote)
    """
)


@pytest.mark.slow
def test_racing_registrations_leave_the_best_champion(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server)
    name = "race-model"
    client.create_registered_model(name)
    first = _new_version(client, name, 10.0)
    assert promote_if_better(client, name, first, 10.0, 0.5).promote

    good = _new_version(client, name, 8.0)
    worse = _new_version(client, name, 9.0)
    script, marker = tmp_path / "racer.py", tmp_path / "slow-racer-has-read"
    script.write_text(RACER)
    racers = [
        subprocess.Popen([sys.executable, str(script), mlflow_server, name, version, fid, role,
                          str(marker)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for version, fid, role in ((worse, "9.0", "slow"), (good, "8.0", "fast"))
    ]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    for racer, (_, err) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, err

    champion = client.get_model_version_by_alias(name, CHAMPION)
    assert champion.version == good
    assert float(champion.tags["fid"]) == 8.0
    # The lock is released: no lock entry is left behind.
    assert [m.name for m in client.search_registered_models()] == [name]
    # Each version's description says what was decided.
    assert "champion" in client.get_model_version(name, good).description
