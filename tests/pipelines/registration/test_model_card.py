"""The model card (``write_model_card``): what a reviewer reads of a registered version, with
its values. The status and the decision's reason, the run and the data version; the scores,
side by side with the champion's when it was scored; the STAND-IN warning (with the
weights' sha256) when the stand-in Inception weights scored it; which weights were
registered, the last losses, the parameters; and the ONNX section exactly when the
registration logged the file."""

from __future__ import annotations

import pandas as pd

from atelier.pipelines.registration.nodes import write_model_card

PROMOTED = "FID 10.0000 beats the champion's 12.0000 by 2.0000 (>= min_fid_improvement 1.0), " \
           "scored side by side with champion version 2"
KEPT = "FID 11.5000 does not beat the champion's 12.0000 by min_fid_improvement 1.0 " \
       "(needed <= 11.0000), scored side by side with champion version 2"
RECORD = {"model_name": "atelier-generator", "version": "3", "promote": True, "reason": PROMOTED,
          "run_id": "r1", "model_uri": "models:/atelier-generator/3", "git_commit": "0123abc",
          "data_version": "md5:5eed.dir"}
SCORES = {"fid": 10.0, "inception_score": 1.5, "inception_score_std": 0.25, "kid": 0.125,
          "kid_std": 0.0625}
CHAMPION = {"version": "2", "fid": 12.0, "inception_score": 1.25, "inception_score_std": 0.5,
            "kid": 0.25, "kid_std": 0.125}
# As the evaluation writes it for weights that are not pytorch-fid's official file
# (InceptionWeights.warning, atelier.core.metrics).
STANDIN = ("STAND-IN Inception weights (sha256 ab12cd34ef56ab78..., not pytorch-fid's official "
           "pt_inception-2015-12-05-6726825d.pth, whose sha256 starts with 6726825d): FID, IS "
           "and KID are NOT comparable with published figures or with runs scored with the "
           "official weights.")
METRICS = {**SCORES, "num_samples": 200, "dims": 2048, "champion": CHAMPION,
           "inception_weights_sha256": "ab12cd34ef56ab78" + "0" * 48,
           "inception_weights_warning": STANDIN, "generator_variant": "ema", "generator_step": 1500}
LOSSES = pd.DataFrame({"step": [500, 1000, 2000], "loss_d": [1.2, 1.1, 0.98766],
                       "loss_g": [0.9, 1.0, 1.23456], "images_per_sec": [300.0, 310.0, 321.4]})
PREPROCESSING = {"resolution": 32, "channels": 1}
TRAINING = {"eval_every": 500, "select_by": "kid", "max_steps": 2000}


def _card(record: dict = RECORD, metrics: dict = METRICS, losses: pd.DataFrame = LOSSES,
          training: dict = TRAINING) -> list[str]:
    return write_model_card(record, metrics, losses, PREPROCESSING, training).splitlines()


def test_the_card_opens_with_the_version_its_status_and_where_it_came_from():
    card = _card()
    assert card[:9] == [
        "# atelier-generator version 3",
        "",
        f"Status at registration: **promoted to champion** — {PROMOTED}.",
        "",
        "- run: `r1`  ",
        "- git commit: `0123abc`  ",
        "- data version: `md5:5eed.dir`  ",
        '- load it: `mlflow.pyfunc.load_model("models:/atelier-generator/3")`',
        "",
    ]
    kept = _card({**RECORD, "promote": False, "reason": KEPT}, {**METRICS, "fid": 11.5})
    assert kept[2] == f"Status at registration: **challenger only** — {KEPT}."
    assert "champion**" not in "\n".join(kept)
    unknown = _card({key: value for key, value in RECORD.items()
                     if key not in ("git_commit", "data_version")})
    assert "- git commit: `unknown`  " in unknown and "- data version: `unknown`  " in unknown


def test_the_scores_are_listed_with_their_values_and_beside_the_champions():
    card = _card()
    metrics = card.index("## Metrics")
    assert card[metrics + 2:metrics + 11] == [
        "| metric | value |", "| --- | --- |",
        "| fid | 10.0 |", "| inception_score | 1.5 |", "| inception_score_std | 0.25 |",
        "| kid | 0.125 |", "| kid_std | 0.0625 |", "| num_samples | 200 |", "| dims | 2048 |",
    ]
    beside = card.index("Scored side by side with champion version 2 (same validation images, "
                        "Inception weights, samples, seeds and dims):")
    assert card[beside + 2:beside + 9] == [
        "| metric | this version | champion |", "| --- | --- | --- |",
        "| fid | 10.0 | 12.0 |", "| inception_score | 1.5 | 1.25 |",
        "| inception_score_std | 0.25 | 0.5 |", "| kid | 0.125 | 0.25 |", "| kid_std | 0.0625 | 0.125 |",
    ]
    # The first version had no champion to be scored beside.
    first = _card({**RECORD, "version": "1", "reason": "no champion yet; FID 10.0000"},
                  {**METRICS, "champion": None})
    assert not any("side by side" in line or "| champion |" in line for line in first)


def test_a_champion_that_could_not_be_scored_is_said_so():
    incompatible = {"version": "2",
                    "incompatible": "it makes (3, 64, 64) images, this data is (1, 32, 32)"}
    card = _card({**RECORD, "promote": False}, {**METRICS, "champion": incompatible})
    assert ("Champion version 2 could not be scored on this data: it makes (3, 64, 64) images, "
            "this data is (1, 32, 32).") in card
    assert "| metric | this version | champion |" not in card


def test_stand_in_scores_carry_the_warning_with_the_weights_sha256():
    card = _card()
    assert f"> **WARNING:** {STANDIN}" in card
    warning = card.index(f"> **WARNING:** {STANDIN}")
    assert card.index("## Metrics") < warning < card.index("## Which weights")
    assert "STAND-IN" in card[warning] and "sha256 ab12cd34ef56ab78..." in card[warning]
    official = {key: value for key, value in METRICS.items() if key != "inception_weights_warning"}
    text = "\n".join(_card(metrics=official))
    assert "WARNING" not in text and "STAND-IN" not in text


def test_which_weights_the_last_losses_and_the_parameters():
    card = _card()
    assert card[card.index("## Which weights") + 2] == (
        "The EMA generator of step 1500: the best by kid of the evaluations every 500 steps "
        "during training (each scored the EMA and the raw generator), not merely the last.")
    last = _card(metrics={**METRICS, "generator_variant": "raw", "generator_step": 2000},
                 training={**TRAINING, "eval_every": 0})
    assert last[last.index("## Which weights") + 2] == (
        "The raw (not averaged) generator of the last step, 2000 (model selection was off).")
    assert "Final step 2000: loss_d 0.9877, loss_g 1.2346, 321 images/s." in card
    assert not any(line.startswith("Final step") for line in _card(losses=pd.DataFrame()))
    parameters = card.index("## Parameters")
    assert card[parameters + 2:] == [
        "| parameter | value |", "| --- | --- |",
        "| preprocessing.channels | 1 |", "| preprocessing.resolution | 32 |",
        "| training.eval_every | 500 |", "| training.max_steps | 2000 |",
        "| training.select_by | kid |",
    ]


def test_the_card_links_the_onnx_export_when_it_was_logged():
    card = "\n".join(_card({**RECORD, "onnx_uri": "runs:/r1/onnx/generator.onnx",
                            "onnx_latents_uri": "runs:/r1/onnx/generator.latents.json"}))
    assert "## Outside Python (ONNX)" in card
    assert "[onnx/generator.onnx](onnx/generator.onnx) (`runs:/r1/onnx/generator.onnx`)" in card
    assert "[onnx/generator.latents.json](onnx/generator.latents.json)" in card
    assert "`mlflow artifacts download -u runs:/r1/onnx/generator.onnx -d .`" in card
    # After the lines on the run, before the samples.
    assert card.index("- load it:") < card.index("## Outside Python (ONNX)") < card.index("## Samples")


def test_without_the_export_the_card_has_no_onnx_section():
    assert "ONNX" not in "\n".join(_card(RECORD))
