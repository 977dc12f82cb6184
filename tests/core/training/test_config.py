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


def test_the_checkpoint_key_names_the_weight_shaping_settings_only(tmp_path):
    config = TrainingConfig.from_params(tiny_params(tmp_path))
    key = config.checkpoint_key("d" * 64, 32, 1, 0)
    # Model selection's settings choose among the weights, they do not shape them.
    for change in ({"eval_samples": 7}, {"select_by": "fid"}, {"max_steps": 5}, {"device": "cpu"}):
        assert TrainingConfig.from_params(tiny_params(tmp_path, **change)).checkpoint_key(
            "d" * 64, 32, 1, 0) == key, change
    for change in ({"lr_g": 0.001}, {"augment_p": 0.5}, {"seed": 3}, {"flip": True}):
        assert TrainingConfig.from_params(tiny_params(tmp_path, **change)).checkpoint_key(
            "d" * 64, 32, 1, 0) != key, change


def test_a_resumed_selection_with_other_settings_starts_afresh():
    from atelier.core.training.selection import ModelSelection

    before = ModelSelection(None, 10, "kid", 200)
    before.best, before.scores = {"step": 10, "variant": "ema", "score": 0.5}, [{"step": 10}]
    same, other = ModelSelection(None, 10, "kid", 200), ModelSelection(None, 10, "fid", 200)
    same.load_state_dict(before.state_dict())
    other.load_state_dict(before.state_dict())
    assert same.best == before.best and same.scores == before.scores
    assert other.best is None and other.scores == []


@pytest.mark.parametrize("key", ["num_sample_images", "grid_size"])
def test_the_grid_size_is_the_evaluations_not_a_training_key(tmp_path, key):
    with pytest.raises(ValueError, match=rf"training\.{key} is not a training parameter.*"
                                         r"evaluation\.grid_size"):
        TrainingConfig.from_params({**tiny_params(tmp_path), key: 16})
    nine = TrainingConfig.from_params(tiny_params(tmp_path), grid_size=9)
    assert nine.grid_size == 9
    # A grid of another size draws other pictures of the same weights: it resumes them.
    assert (nine.checkpoint_key("d" * 64, 32, 1, 0)
            == TrainingConfig.from_params(tiny_params(tmp_path)).checkpoint_key("d" * 64, 32, 1, 0))
