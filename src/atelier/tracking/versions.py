"""The registered model's versions as a browser of the registry sees them (the gallery):
by alias or by number.

A reference (``ref``) is what ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` names: an
alias (``champion``, ``challenger``, ...) or a version number. An alias is resolved again
each time it is used, so the page follows a champion that moves; a version's generator is
downloaded once (through :class:`atelier.tracking.ModelRegistry`, the project's one reader
of registered generators) and kept in memory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from torch import nn

from atelier.core.generate import class_names_of
from atelier.core.models import GeneratorCheckpoint, load_generator
from atelier.tracking.parents import fine_tuned_from
from atelier.tracking.registry import ModelRegistry

# Shown first in the version list, in this order; other aliases follow alphabetically.
KNOWN_ALIASES = ("champion", "challenger")
# Version tags worth a glance (set by the registration pipeline).
SCORE_TAGS = ("fid", "inception_score", "kid")


@dataclass(frozen=True)
class LoadedVersion:
    """A registered version, ready to draw with (CPU, eval mode)."""

    version: str
    checkpoint: GeneratorCheckpoint
    generator: nn.Module
    tags: dict[str, str]

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names of a conditional generator; empty for an unconditional one."""
        return class_names_of(self.checkpoint)


class RegisteredVersions:
    """The versions and aliases of ``model_name`` in the store ``client`` reads."""

    def __init__(self, model_name: str, client: MlflowClient) -> None:
        self.model_name = model_name
        self._client = client
        self._registry = ModelRegistry(client)
        self._loaded: dict[str, LoadedVersion] = {}
        self._lock = threading.Lock()

    def references(self) -> list[tuple[str, str]]:
        """``(label, ref)`` pairs for a version menu: aliases first (``champion (v3)``),
        then every version, newest first (``v3 · fid 41.2``)."""
        try:
            model = self._client.get_registered_model(self.model_name)
        except MlflowException as error:
            raise LookupError(
                f"No registered model '{self.model_name}' in the tracking store "
                f"{self._client.tracking_uri}. Train and register one with `make train` "
                "(kedro run --pipeline=train), or point --tracking-uri (or "
                "MLFLOW_TRACKING_URI) at the store that holds it.") from error
        versions = sorted(self._client.search_model_versions(f"name='{self.model_name}'"),
                          key=lambda entry: int(entry.version), reverse=True)
        aliases = dict(model.aliases or {})
        ordered = [alias for alias in KNOWN_ALIASES if alias in aliases]
        ordered += sorted(set(aliases) - set(KNOWN_ALIASES))
        choices = [(f"{alias} (v{aliases[alias]})", alias) for alias in ordered]
        for entry in versions:
            tags = entry.tags or {}
            score = f" · fid {float(tags['fid']):.1f}" if tags.get("fid") else ""
            if score and tags.get("inception_weights_warning"):
                score += " (STAND-IN weights)"
            choices.append((f"v{entry.version}{score}", str(entry.version)))
        return choices

    def resolve(self, ref: str) -> str:
        """The version number ``ref`` names (an alias or a number)."""
        ref = str(ref).strip()
        number = ref.removeprefix("v")  # "v3" and "3" both name version 3
        try:
            if number.isdigit():
                return str(self._client.get_model_version(self.model_name, number).version)
            return str(self._client.get_model_version_by_alias(self.model_name, ref).version)
        except MlflowException as error:
            known = ", ".join(choice for _, choice in self.references()) or "none"
            raise LookupError(f"'{ref}' is neither an alias nor a version of "
                              f"{self.model_name} (known: {known}).") from error

    def load(self, ref: str) -> LoadedVersion:
        """The generator of the version ``ref`` names, downloaded once per version."""
        version = self.resolve(ref)
        with self._lock:
            if version not in self._loaded:
                registered = self._registry.version(self.model_name, version)
                tags = dict(self._client.get_model_version(self.model_name, version).tags or {})
                self._loaded[version] = LoadedVersion(
                    version, registered.generator, load_generator(registered.generator), tags)
            return self._loaded[version]

    def describe(self, loaded: LoadedVersion) -> str:
        """A Markdown line about ``loaded``: version, aliases, architecture, the parent of a
        fine-tune, scores."""
        aliases = sorted(alias for alias, version in
                         (self._client.get_registered_model(self.model_name).aliases or {}).items()
                         if str(version) == loaded.version)
        config = loaded.checkpoint.config
        colour = "RGB" if config["channels"] == 3 else "grayscale"
        parts = [f"**{self.model_name} v{loaded.version}**"
                 + (f" ({', '.join(aliases)})" if aliases else ""),
                 f"{config.get('architecture', 'dcgan')} {config['resolution']} x "
                 f"{config['resolution']} {colour}",
                 f"step {loaded.checkpoint.step} ({loaded.checkpoint.variant})"]
        if loaded.class_names:
            parts.append(f"{len(loaded.class_names)} classes")
        if loaded.checkpoint.parent:  # a fine-tune: what it started from
            parts.append(fine_tuned_from(loaded.checkpoint.parent))
        parts += [f"{key} {float(loaded.tags[key]):.3g}" for key in SCORE_TAGS
                  if key in loaded.tags]
        if loaded.tags.get("inception_weights_warning"):
            parts.append("scored with STAND-IN Inception weights (not FID)")
        run_id = loaded.tags.get("run_id")
        if run_id:
            parts.append(f"run `{run_id[:8]}`")
        return " · ".join(parts)


def connect_registry(model_name: str, tracking_uri: str,
                     registry_uri: str | None = None) -> RegisteredVersions:
    """``model_name``'s versions in the store at ``tracking_uri`` (and ``registry_uri``),
    which becomes this process's MLflow store (as kedro-mlflow sets it for a run), so that
    ``models:/`` downloads read it too."""
    mlflow.set_tracking_uri(tracking_uri)
    if registry_uri:
        mlflow.set_registry_uri(registry_uri)
    return RegisteredVersions(model_name, MlflowClient(tracking_uri, registry_uri))
