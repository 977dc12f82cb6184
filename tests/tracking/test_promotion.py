"""A promotion you can trust (src/atelier/tracking/promotion.py): the rule, and the champion
scored side by side with the candidate.

The quick tests hold the rule to written-out outcomes: candidate and champion FIDs,
``min_fid_improvement`` and the decision and reason they must give, and what
:func:`promote_if_better` does with the aliases in a SQLite store (a champion that changed
since the evaluation included).

The slow ones are real ``kedro run --pipeline=train`` runs on digit subsets, registering
into one MLflow store, with the stand-in Inception weights. Each changes what would make a
stored FID incomparable (the data version, ``num_samples``, ``fid_dims``, the resolution)
and checks that the decision is made on the two numbers of one evaluation, with a margin
that fixes the outcome whatever the scores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_project_copy, run_kedro, test_env, tiny_params
from mlflow.tracking import MlflowClient

from atelier.tracking.promotion import (
    CHALLENGER,
    CHAMPION,
    PromotionDecision,
    decide_promotion,
    decision_record,
    decision_verdict,
    promote_if_better,
)

MODEL = "atelier-generator"
NAN, INF = float("nan"), float("inf")

# ------------------------------------------------------------------------------ the rule

# (candidate FID, champion's side-by-side FID or None, min_fid_improvement) -> the decision
# and its reason, written out.
RULE_CASES = [
    pytest.param(10.0, 12.0, 1.0, True,
                 "FID 10.0000 beats the champion's 12.0000 by 2.0000 (>= min_fid_improvement "
                 "1.0), scored side by side with champion version 1", id="better-by-more"),
    pytest.param(11.0, 12.0, 1.0, True,
                 "FID 11.0000 beats the champion's 12.0000 by 1.0000 (>= min_fid_improvement "
                 "1.0), scored side by side with champion version 1", id="better-by-exactly"),
    pytest.param(11.5, 12.0, 1.0, False,
                 "FID 11.5000 does not beat the champion's 12.0000 by min_fid_improvement 1.0 "
                 "(needed <= 11.0000), scored side by side with champion version 1",
                 id="better-by-too-little"),
    pytest.param(12.0, 12.0, 0.0, True,
                 "FID 12.0000 beats the champion's 12.0000 by 0.0000 (>= min_fid_improvement "
                 "0.0), scored side by side with champion version 1", id="tie-no-margin"),
    pytest.param(12.0, 12.0, 0.5, False,
                 "FID 12.0000 does not beat the champion's 12.0000 by min_fid_improvement 0.5 "
                 "(needed <= 11.5000), scored side by side with champion version 1",
                 id="tie-with-margin"),
    pytest.param(13.0, 12.0, 0.0, False,
                 "FID 13.0000 does not beat the champion's 12.0000 by min_fid_improvement 0.0 "
                 "(needed <= 12.0000), scored side by side with champion version 1", id="worse"),
    pytest.param(30.0, None, 0.5, True, "no champion yet; FID 30.0000", id="no-champion"),
    pytest.param(NAN, None, 0.5, False, "candidate FID nan is not finite",
                 id="nan-without-champion"),
    pytest.param(NAN, 12.0, 1.0, False, "candidate FID nan is not finite", id="nan"),
    pytest.param(INF, 12.0, 1.0, False, "candidate FID inf is not finite", id="inf"),
]


@pytest.mark.parametrize(("candidate", "champion_fid", "margin", "promote", "reason"), RULE_CASES)
def test_decide_promotion(candidate, champion_fid, margin, promote, reason):
    champion = None if champion_fid is None else {"version": "1", "fid": champion_fid}
    decision = decide_promotion(candidate, champion, margin)
    assert decision == PromotionDecision(promote, reason, champion)
    assert decision_verdict(decision) == ("promoted to champion" if promote else "challenger only")


@pytest.mark.parametrize(("policy", "promote"), [("keep", False), ("promote", True)])
def test_an_incompatible_champion_follows_the_policy(policy, promote):
    champion = {"version": "4", "incompatible": "it makes (1, 32, 32) images"}
    assert decide_promotion(20.0, champion, 0.5, policy) == PromotionDecision(
        promote, "champion version 4 could not be scored on this data (it makes (1, 32, 32) "
        f"images); registration.on_incompatible_champion={policy}", champion)
    # A broken evaluation is never promoted, not even over an incompatible champion.
    assert decide_promotion(NAN, champion, 0.5, policy) == PromotionDecision(
        False, "candidate FID nan is not finite", champion)


def test_an_unknown_incompatible_policy_is_refused():
    with pytest.raises(ValueError, match=r"on_incompatible_champion must be one of "
                                         r"\('promote', 'keep'\), got 'sometimes'"):
        decide_promotion(20.0, None, 0.5, "sometimes")


def test_the_decision_record_is_the_decision_with_its_version():
    champion = {"version": "1", "fid": 12.0}
    assert decision_record(MODEL, "3", decide_promotion(11.5, champion, 1.0)) == {
        "model_name": MODEL, "version": 3, "promote": False,
        "reason": "FID 11.5000 does not beat the champion's 12.0000 by min_fid_improvement 1.0 "
                  "(needed <= 11.0000), scored side by side with champion version 1",
        "champion": champion}


def test_promote_if_better_moves_the_aliases_as_decided(tmp_path):
    """In a SQLite store: who holds ``champion`` and ``challenger`` after each registration,
    including one whose evaluation scored a champion that has been replaced since."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model(MODEL)

    def new_version() -> str:
        run = client.create_run(experiment_id="0")
        return client.create_model_version(MODEL, source=f"runs:/{run.info.run_id}/generator",
                                           run_id=run.info.run_id).version

    def aliases() -> tuple[str, str]:
        return tuple(str(client.get_model_version_by_alias(MODEL, alias).version)
                     for alias in (CHAMPION, CHALLENGER))

    one, two, three, four, five = (new_version() for _ in range(5))
    decision = promote_if_better(client, MODEL, one, {"fid": 12.0, "champion": None}, 1.0)
    assert decision == PromotionDecision(True, "no champion yet; FID 12.0000")
    assert aliases() == ("1", "1")

    beside_one = {"version": "1", "fid": 12.0}
    decision = promote_if_better(client, MODEL, two, {"fid": 11.5, "champion": beside_one}, 1.0)
    assert (decision.promote, aliases()) == (False, ("1", "2"))
    assert decision.reason.startswith("FID 11.5000 does not beat the champion's 12.0000")

    decision = promote_if_better(client, MODEL, three, {"fid": 10.0, "champion": beside_one}, 1.0)
    assert (decision.promote, aliases()) == (True, ("3", "3"))
    assert decision.reason.startswith("FID 10.0000 beats the champion's 12.0000 by 2.0000")

    # Evaluated beside version 1, which is no longer champion: without a rescore it stays
    # challenger, however good its FID against version 1 was.
    stale = {"fid": 5.0, "champion": beside_one}
    decision = promote_if_better(client, MODEL, four, stale, 1.0)
    assert (decision.promote, aliases()) == (False, ("3", "4"))
    assert decision.reason.startswith("the champion changed while this model was evaluated "
                                      "(version 1 was scored, version 3 is champion now)")
    # With a rescore the decision is taken on the current champion's score: 8.5 beats the
    # stale 12.0 but not version 3's 9.0 by 1.0.
    rescored = []

    def rescore(version: str) -> dict:
        rescored.append(version)
        return {"version": version, "fid": 9.0}

    decision = promote_if_better(client, MODEL, five, {**stale, "fid": 8.5}, 1.0, rescore=rescore)
    assert rescored == ["3"]
    assert decision == PromotionDecision(
        False, "FID 8.5000 does not beat the champion's 9.0000 by min_fid_improvement 1.0 "
        "(needed <= 8.0000), scored side by side with champion version 3",
        {"version": "3", "fid": 9.0})
    assert aliases() == ("3", "5")
    # No lock entry is left behind.
    assert [model.name for model in client.search_registered_models()] == [MODEL]


# ------------------------------------------------------------------ end to end (kedro run)


def _use_digits(project: Path, sample_images_dir: Path, labels: str, per_label: int = 60) -> None:
    """Make the project's images the first ``per_label`` digits of each of ``labels``."""
    images = project / "data/01_raw/images"
    shutil.rmtree(images, ignore_errors=True)
    for label in labels:
        (images / label).mkdir(parents=True)
        for path in sorted((sample_images_dir / label).glob("*.png"))[:per_label]:
            shutil.copy2(path, images / label / path.name)


def _train(project: Path, env: dict, **overrides) -> tuple[dict, dict]:
    run_kedro(project, "run", "--pipeline=train", f"--params={tiny_params(**overrides)}", env=env)
    reports = project / "data/08_reporting"
    return (json.loads((reports / "metrics.json").read_text()),
            json.loads((reports / "registration.json").read_text()))


@pytest.fixture
def promotion_project(tmp_path, standin_torch_home):
    project = make_project_copy(tmp_path / "project")
    env = test_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                   TORCH_HOME=str(standin_torch_home))
    return project, env, MlflowClient(env["MLFLOW_TRACKING_URI"])


# Margins that fix the outcome whatever these tiny runs score (their FIDs differ by far
# less than 1000, checked below): no candidate beats a champion by 1000, every candidate
# is within 1000 of one. The rule itself is held to exact values above.
OUT_OF_REACH, WITHIN_REACH = 1000.0, -1000.0


def _assert_decided_side_by_side(client: MlflowClient, metrics: dict, record: dict,
                                 stored: float, margin: float, promote: bool) -> None:
    """Version 2 was decided on the champion's (version 1's) side-by-side score from this
    evaluation, not on its ``stored`` FID, and ``promote`` is what the margin makes of it."""
    champion = metrics["champion"]
    assert champion["version"] == "1" and record["version"] == 2
    assert abs(metrics["fid"] - champion["fid"]) < 1000  # the margin decides, as planned
    assert record["promote"] is promote
    fid, champion_fid = f"{metrics['fid']:.4f}", f"{champion['fid']:.4f}"
    if promote:
        assert record["reason"].startswith(f"FID {fid} beats the champion's {champion_fid} by ")
        assert f"(>= min_fid_improvement {margin})" in record["reason"]
    else:
        assert record["reason"].startswith(f"FID {fid} does not beat the champion's {champion_fid} "
                                           f"by min_fid_improvement {margin} (needed <= ")
    assert record["reason"].endswith(", scored side by side with champion version 1")
    assert f"{stored:.4f}" not in record["reason"]  # the stored FID decides nothing
    version = client.get_model_version(MODEL, "2")
    assert float(version.tags["champion_fid"]) == champion["fid"]
    assert version.tags["champion_version_scored"] == "1"
    assert f"- decision: {record['reason']}" in version.description.splitlines()
    run = client.get_run(record["run_id"])
    assert run.data.metrics["champion_fid"] == pytest.approx(champion["fid"])
    assert run.data.metrics["fid"] == pytest.approx(metrics["fid"])
    assert run.data.tags["registration.promoted"] == str(promote).lower()
    champion_now = str(client.get_model_version_by_alias(MODEL, "champion").version)
    assert champion_now == ("2" if promote else "1")


@pytest.mark.slow
def test_new_data_version_scores_the_champion_again_on_it(promotion_project, sample_images_dir):
    project, env, client = promotion_project
    _use_digits(project, sample_images_dir, "01234")
    first, registered = _train(project, env)
    assert registered["promote"] and first["champion"] is None
    stored = float(client.get_model_version(MODEL, "1").tags["fid"])
    assert stored == pytest.approx(first["fid"])

    _use_digits(project, sample_images_dir, "56789")  # a new data version, other digits
    second, record = _train(project, env, **{"registration.min_fid_improvement": OUT_OF_REACH})
    # The champion, trained on 0-4, scored again on the 5-9 validation images: another
    # number than its stored FID, and the one the decision uses.
    assert second["champion"]["fid"] != stored
    _assert_decided_side_by_side(client, second, record, stored, OUT_OF_REACH, promote=False)


@pytest.mark.slow
def test_other_num_samples_and_fid_dims_score_the_champion_with_the_same_ones(
        promotion_project, sample_images_dir):
    project, env, client = promotion_project
    _use_digits(project, sample_images_dir, "0123456789", per_label=30)
    first, _ = _train(project, env)
    assert (first["num_samples"], first["dims"]) == (20, 64)
    stored = float(client.get_model_version(MODEL, "1").tags["fid"])

    second, record = _train(project, env, **{"evaluation.num_samples": 30,
                                             "evaluation.fid_dims": 192,
                                             "training.seed": 1,
                                             "registration.min_fid_improvement": WITHIN_REACH})
    assert (second["num_samples"], second["dims"]) == (30, 192)
    # FID-192 on 30 samples is another number than the stored FID-64 on 20 samples.
    assert second["champion"]["fid"] != stored
    _assert_decided_side_by_side(client, second, record, stored, WITHIN_REACH, promote=True)


@pytest.mark.slow
def test_a_champion_at_another_resolution_follows_the_policy(promotion_project,
                                                            sample_images_dir):
    project, env, client = promotion_project
    _use_digits(project, sample_images_dir, "0123456789", per_label=30)
    _train(project, env)  # 32 x 32: version 1, champion

    kept, record = _train(project, env, **{"preprocessing.resolution": 64})
    incompatible = kept["champion"]["incompatible"]
    assert kept["champion"] == {"version": "1", "incompatible": incompatible}
    assert "(1, 32, 32)" in incompatible
    assert (record["version"], record["promote"]) == (2, False)
    assert record["reason"] == (f"champion version 1 could not be scored on this data "
                                f"({incompatible}); registration.on_incompatible_champion=keep")
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert client.get_model_version(MODEL, "2").tags["champion_incompatible"] == incompatible

    _, record = _train(project, env, **{"preprocessing.resolution": 64,
                                        "registration.on_incompatible_champion": "promote"})
    assert (record["version"], record["promote"]) == (3, True)
    assert record["reason"] == (f"champion version 1 could not be scored on this data "
                                f"({incompatible}); registration.on_incompatible_champion=promote")
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "3"
