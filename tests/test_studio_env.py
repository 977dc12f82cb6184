"""``--env=studio``: the recommended small-data recipe is a valid set of overrides."""

from __future__ import annotations

import yaml
from conftest import PROJECT_ROOT
from kedro.config import OmegaConfigLoader

from atelier.core.training import TrainingConfig


def _parameters(env: str) -> dict:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env=env,
                               merge_strategy={"parameters": "soft"})
    return loader["parameters"]


def test_studio_overrides_known_training_keys_and_validates():
    studio = yaml.safe_load((PROJECT_ROOT / "conf/studio/parameters_training.yml").read_text())
    base = _parameters("local")
    assert set(studio) == {"training"} and set(studio["training"]) <= set(base["training"])
    merged = _parameters("studio")
    config = TrainingConfig.from_params(merged["training"])  # every key valid together
    for key, value in studio["training"].items():
        assert merged["training"][key] == value  # the studio value wins ...
    untouched = set(base["training"]) - set(studio["training"])
    assert {key: merged["training"][key] for key in untouched} == {
        key: base["training"][key] for key in untouched}  # ... and only those keys change
    assert config.augment != "none"  # the small-data recipe augments
