"""The model card's section on the ONNX export (``registration.onnx``): there exactly when the
registration logged the file, linking it and its seed latents by their artifact paths."""

from __future__ import annotations

import pandas as pd

from atelier.pipelines.registration.nodes import write_model_card

RECORD = {"model_name": "atelier-generator", "version": "3", "promote": True, "reason": "first",
          "run_id": "r1", "model_uri": "models:/atelier-generator/3"}


def _card(record: dict) -> str:
    return write_model_card(record, {"fid": 30.0}, pd.DataFrame(), {"resolution": 32},
                            {"eval_every": 0})


def test_the_card_links_the_onnx_export_when_it_was_logged():
    card = _card({**RECORD, "onnx_uri": "runs:/r1/onnx/generator.onnx",
                  "onnx_latents_uri": "runs:/r1/onnx/generator.latents.json"})
    assert "## Outside Python (ONNX)" in card
    assert "[onnx/generator.onnx](onnx/generator.onnx) (`runs:/r1/onnx/generator.onnx`)" in card
    assert "[onnx/generator.latents.json](onnx/generator.latents.json)" in card
    assert "`mlflow artifacts download -u runs:/r1/onnx/generator.onnx -d .`" in card


def test_without_the_export_the_card_has_no_onnx_section():
    assert "ONNX" not in _card(RECORD)
