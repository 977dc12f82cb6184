"""``--env=studio``: the recommended small-data recipe, merged over ``conf/base`` by the config
loader the project's settings give Kedro (src/atelier/settings.py), into a valid set of
training parameters."""

from __future__ import annotations

import yaml
from conftest import PROJECT_ROOT
from kedro.framework.project import settings
from kedro.framework.startup import bootstrap_project

from atelier.core.training import TrainingConfig

# conf/studio/parameters_training.yml, written out: what `--env=studio` changes.
STUDIO = {"latent_dim": 100, "g_width": 64, "d_width": 64, "augment": "color,translation",
          "augment_p": 0.5, "spectral_norm": True, "loss": "hinge"}


def _parameters(env: str | None) -> dict:
    """The parameters of ``kedro run --env=<env>``: the loader is built as a KedroSession
    builds it (``settings.CONFIG_LOADER_CLASS`` with ``settings.CONFIG_LOADER_ARGS``, read
    from the project's settings.py by ``bootstrap_project``)."""
    bootstrap_project(PROJECT_ROOT)
    loader = settings.CONFIG_LOADER_CLASS(conf_source=str(PROJECT_ROOT / settings.CONF_SOURCE),
                                          env=env, **settings.CONFIG_LOADER_ARGS)
    return loader["parameters"]


def test_the_loader_is_the_projects():
    from atelier import settings as project_settings

    bootstrap_project(PROJECT_ROOT)
    assert settings.CONFIG_LOADER_CLASS is project_settings.CONFIG_LOADER_CLASS
    assert settings.CONFIG_LOADER_ARGS == project_settings.CONFIG_LOADER_ARGS


def _base_files() -> dict:
    """conf/base's parameter files as YAML reads them, one top-level key per pipeline."""
    sections: dict = {}
    for path in sorted((PROJECT_ROOT / "conf/base").glob("parameters_*.yml")):
        sections.update(yaml.safe_load(path.read_text()))
    return sections


def test_studio_overrides_its_training_keys_and_keeps_the_rest_of_base():
    studio_file = yaml.safe_load((PROJECT_ROOT / "conf/studio/parameters_training.yml").read_text())
    assert studio_file == {"training": STUDIO}
    base = _base_files()
    merged = _parameters("studio")
    # The studio values win key by key (a soft merge, not the whole section replaced); every
    # other value, in training and in the other pipelines' sections, is conf/base's.
    assert merged == {**base, "training": {**base["training"], **STUDIO}}
    assert {key: merged["training"][key] for key in STUDIO} == STUDIO
    assert (merged["training"]["max_steps"], merged["training"]["batch_size"],
            merged["training"]["lr_d"], merged["training"]["eval_every"]) == (2000, 64, 0.0002, 1000)
    assert base["training"]["augment"] == "none" and base["training"]["loss"] == "bce"
    assert merged["registration"]["min_fid_improvement"] == 0.5


def test_the_studio_recipe_is_a_valid_training_config():
    config = TrainingConfig.from_params(_parameters("studio")["training"])  # every key valid together
    assert (config.latent_dim, config.g_width, config.d_width) == (100, 64, 64)
    assert (config.augment, config.augment_p) == ("color,translation", 0.5)
    assert (config.spectral_norm, config.loss) == (True, "hinge")
    assert config.max_steps == 2000  # from conf/base


def test_the_fastgan_environment_is_a_valid_fastgan_recipe_at_64_px():
    merged = _parameters("fastgan")
    base = _base_files()
    config = TrainingConfig.from_params(merged["training"])
    assert (config.architecture, config.ada, config.spectral_norm, config.loss) == (
        "fastgan", True, True, "hinge")
    assert "cutout" not in config.augment
    assert (merged["preprocessing"]["resolution"], merged["preprocessing"]["channels"]) == (64, 3)
    # Soft merge: the rest of both sections, and the other pipelines, are conf/base's.
    assert merged["preprocessing"]["val_fraction"] == base["preprocessing"]["val_fraction"]
    assert merged["training"]["max_steps"] == base["training"]["max_steps"]
    assert merged["evaluation"] == base["evaluation"]


def test_the_finetune_environment_fine_tunes_a_studio_recipe_model():
    """``--env=finetune`` starts from the champion with FreezeD and a fast ADA controller,
    and its networks are the studio recipe's: a parent trained with ``--env=studio`` passes
    the compatibility check (a base-recipe one is refused naming the keys)."""
    import pytest

    from atelier.core.errors import ParentModelError
    from atelier.core.models import build_discriminator, build_generator
    from atelier.core.training import TrainingState, check_parent

    merged, studio = _parameters("finetune"), _parameters("studio")
    config = TrainingConfig.from_params(merged["training"])
    assert config.init_from == "models:/atelier-generator@champion"
    assert (config.freeze_d_layers, config.ada, config.ada_kimg) == (1, True, 20)
    assert merged["evaluation"] == _base_files()["evaluation"]

    def parent(training: dict) -> TrainingState:
        generator = build_generator({"resolution": 32, "channels": 3,
                                     "latent_dim": training["latent_dim"],
                                     "g_width": training["g_width"]})
        discriminator = build_discriminator("dcgan", 32, 3, training["d_width"],
                                            training["spectral_norm"], 0)
        from atelier.core.models import GeneratorCheckpoint
        return TrainingState(GeneratorCheckpoint.from_generator(generator),
                             {"architecture": "dcgan", "d_width": training["d_width"],
                              "spectral_norm": training["spectral_norm"], "num_classes": 0},
                             discriminator.state_dict())

    ours = {"architecture": config.architecture, "resolution": 32, "channels": 3,
            "latent_dim": config.latent_dim, "g_width": config.g_width,
            "d_width": config.d_width, "spectral_norm": config.spectral_norm,
            "conditional": config.conditional}
    check_parent(parent(studio["training"]), **ours)
    with pytest.raises(ParentModelError, match="training.g_width is 64 here but 32 in the parent"):
        check_parent(parent(_base_files()["training"]), **ours)
