"""EvaluationConfig: params:evaluation validated before any node, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from atelier.core.metrics import SELECTION_SEED_OFFSET, EvaluationConfig
from atelier.hooks.preflight import check_ingestion, check_preprocessing

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _base(name: str) -> dict:
    file = {"ingestion": "data_ingestion"}.get(name, name)
    return yaml.safe_load((PROJECT_ROOT / f"conf/base/parameters_{file}.yml").read_text())[name]


def test_the_shipped_settings_are_valid_and_typed():
    config = EvaluationConfig.from_params(_base("evaluation"))
    assert config == EvaluationConfig()  # the dataclass defaults are conf/base's
    assert config.seeds() == range(1_000_000, 1_000_500)
    assert config.seeds(3) == range(1_000_000, 1_000_003)
    assert EvaluationConfig.from_params({**_base("evaluation"), "num_samples": "20",
                                         "reference_cache_dir": None}).num_samples == 20


@pytest.mark.parametrize(("change", "message"), [
    ({"is_splits": 0}, "evaluation.is_splits must be at least 1, got 0"),
    ({"is_splits": 600}, "evaluation.is_splits (600) must not exceed num_samples (500)"),
    ({"fid_dims": 100}, "evaluation.fid_dims must be one of (64, 192, 768, 2048)"),
    ({"num_samples": 1}, "evaluation.num_samples must be at least 2"),
    ({"num_samples": 2.5}, "evaluation.num_samples must be a whole number, got 2.5"),
    ({"kid_subsets": "many"}, "evaluation.kid_subsets must be a whole number, got 'many'"),
    ({"device": "gpu"}, "evaluation.device must be auto, cpu, mps, cuda or cuda:N, got 'gpu'"),
    ({"seed_offset": SELECTION_SEED_OFFSET - 10}, "seeds from there on are model selection's"),
    ({"seed_offset": -1}, "evaluation.seed_offset must be 0 or more"),
])
def test_a_bad_value_is_refused_naming_the_key(change, message):
    with pytest.raises(ValueError) as error:
        EvaluationConfig.from_params({**_base("evaluation"), **change})
    assert message in str(error.value)


def test_unknown_and_missing_keys_are_refused():
    with pytest.raises(ValueError, match=r"Unknown evaluation parameter\(s\) \['fid_dim'\]"):
        EvaluationConfig.from_params({**_base("evaluation"), "fid_dim": 64})
    settings = _base("evaluation")
    del settings["kid_subsets"]
    with pytest.raises(ValueError, match=r"Missing evaluation parameter\(s\) \['kid_subsets'\]"):
        EvaluationConfig.from_params(settings)


@pytest.mark.parametrize(("change", "architecture", "message"), [
    ({"resolution": 48}, "dcgan", "preprocessing.resolution: DCGAN needs a power-of-two"),
    ({"resolution": 8}, "dcgan", "got 8"),
    ({"resolution": 16}, "fastgan", "preprocessing.resolution: FastGAN needs a power-of-two "
                                    "resolution of at least 32, got 16"),
    ({"channels": 4}, None, "preprocessing.channels must be 1 (grayscale) or 3 (RGB), got 4"),
    ({"val_fraction": 1.0}, None, "preprocessing.val_fraction must be in [0, 1), got 1.0"),
    ({"workers": 0}, None, "preprocessing.workers must be null (all cores) or at least 1"),
    ({"allow_upscale": "maybe"}, None, "preprocessing.allow_upscale must be true or false"),
    ({"resolution": "big"}, None, "preprocessing.resolution must be a whole number, got 'big'"),
])
def test_bad_preprocessing_values_are_refused_naming_the_key(change, architecture, message):
    with pytest.raises(ValueError) as error:
        check_preprocessing({**_base("preprocessing"), **change}, architecture)
    assert message in str(error.value)


def test_a_resolution_only_the_networks_refuse_passes_when_the_run_does_not_train():
    check_preprocessing({**_base("preprocessing"), "resolution": 48}, architecture=None)
    check_preprocessing({**_base("preprocessing"), "resolution": 16}, architecture="dcgan")


@pytest.mark.parametrize(("change", "message"), [
    ({"source": ""}, "ingestion.source must name the image folder or archive"),
    ({"max_archive_members": 0}, "ingestion.max_archive_members must be at least 1"),
    ({"max_image_pixels": "lots"}, "ingestion.max_image_pixels must be a whole number"),
    ({"workers": -2}, "ingestion.workers must be null (all cores) or at least 1, got -2"),
    ({"allow_upscale": True}, "ingestion.allow_upscale is now preprocessing.allow_upscale"),
])
def test_bad_ingestion_values_are_refused_naming_the_key(change, message):
    check_ingestion(_base("ingestion"))
    with pytest.raises(ValueError) as error:
        check_ingestion({**_base("ingestion"), **change})
    assert message in str(error.value)
