"""atelier.core.training.config: TrainingConfig.from_params checks names and values."""

from __future__ import annotations

import pytest
import yaml
from training_cases import PROJECT_ROOT, tiny_params

from atelier.core.training import TrainingConfig


def test_config_rejects_unknown_and_missing_keys(tmp_path):
    params = tiny_params(tmp_path)
    with pytest.raises(ValueError, match=r"Unknown training parameter\(s\) \['g_widht'\]"):
        TrainingConfig.from_params({**params, "g_widht": 8})
    del params["ema_kimg"]
    with pytest.raises(ValueError, match=r"Missing training parameter\(s\) \['ema_kimg'\]"):
        TrainingConfig.from_params(params)


def test_config_validates_values(tmp_path):
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainingConfig.from_params(tiny_params(tmp_path, loss="wasserstein"))
    with pytest.raises(ValueError, match="sample_every .* multiple of log_every"):
        TrainingConfig.from_params(tiny_params(tmp_path, log_every=3, sample_every=10))
    config = TrainingConfig.from_params(tiny_params(tmp_path, lr_g="1e-4", compile="false"))
    assert config.lr_g == 1e-4 and config.compile is False


def test_conf_base_parameters_are_valid():
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())
    TrainingConfig.from_params(params["training"])
