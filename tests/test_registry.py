"""Promotion rule and the promotion lock, against a real ``mlflow server``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from atelier.tracking.promotion import CHAMPION, decide_promotion, promote_if_better


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "promote"),
    [
        (30.0, None, 0.5, True),   # no champion yet: always promoted
        (29.0, 30.0, 0.5, True),   # beats the side-by-side champion by 1.0 >= 0.5
        (29.5, 30.0, 0.5, True),   # beats by exactly the margin
        (29.8, 30.0, 0.5, False),  # better, but not by enough
        (31.0, 30.0, 0.0, False),  # worse
        (float("nan"), None, 0.5, False),  # a broken evaluation never wins
    ],
)
def test_decide_promotion(candidate, champion, margin, promote):
    scored = None if champion is None else {"version": "1", "fid": champion}
    decision = decide_promotion(candidate, scored, margin)
    assert decision.promote is promote
    assert decision.reason
    if champion is not None:
        assert f"{champion:.4f}" in decision.reason and "side by side" in decision.reason


@pytest.mark.parametrize(("policy", "promote"), [("keep", False), ("promote", True)])
def test_an_incompatible_champion_follows_the_policy(policy, promote):
    scored = {"version": "4", "incompatible": "it makes (1, 32, 32) images"}
    decision = decide_promotion(20.0, scored, 0.5, policy)
    assert decision.promote is promote
    assert "version 4" in decision.reason and f"on_incompatible_champion={policy}" in decision.reason
    with pytest.raises(ValueError, match="on_incompatible_champion must be one of"):
        decide_promotion(20.0, scored, 0.5, "sometimes")


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
    from atelier.tracking import promotion

    uri, name, version, fid, role, marker = sys.argv[1:7]
    marker = pathlib.Path(marker)
    read_champion = promotion.current_champion_version

    def read_then_dawdle(client, model_name):
        # The slow racer reads the champion, tells the fast one, then dawdles before it
        # writes: without the lock the fast racer would promote in between and then be
        # overwritten by this worse model.
        result = read_champion(client, model_name)
        marker.touch()
        time.sleep(3)
        return result

    if role == "slow":
        promotion.current_champion_version = read_then_dawdle
    else:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    # Both were evaluated side by side with version 1 (FID 10.0 in that evaluation). When
    # the champion changed meanwhile, the new one is scored again: here its score on the
    # same images is the FID it was registered with (the pipeline scores it with Inception,
    # see tests/test_promotion.py).
    client = MlflowClient(uri)
    metrics = {"fid": float(fid), "champion": {"version": "1", "fid": 10.0}}

    def rescore(champion):
        return {"version": champion, "fid": float(client.get_model_version(name, champion).tags["fid"])}

    decision = promotion.promote_if_better(client, name, version, metrics, 0.5, rescore=rescore)
    print(decision.promote)
    """
)


@pytest.mark.slow
def test_racing_registrations_leave_the_best_champion(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server)
    name = "race-model"
    client.create_registered_model(name)
    first = _new_version(client, name, 10.0)
    assert promote_if_better(client, name, first, {"fid": 10.0, "champion": None}, 0.5).promote

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
    # Each version's description says what was decided; the worse one took the champion
    # first, so the better one was scored against it again before winning.
    assert "champion" in client.get_model_version(name, good).description
    assert "beats the champion's 9.0000" in client.get_model_version(name, good).description
