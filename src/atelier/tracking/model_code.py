"""What travels with the registered model: the modules its pyfunc imports, and their requirements.

``mlflow.pyfunc.log_model(code_paths=[folder])`` copies ``folder`` into the model and puts
it first on ``sys.path`` wherever the model loads. The whole ``atelier`` package would
bring Kedro glue and the rest of the tracking adapter, whose imports (Kedro, kedro-mlflow,
DVC) the model's environment does not have. :func:`stage_model_code` copies only the
modules :class:`~atelier.tracking.model.GeneratorModel` imports when it loads and predicts,
as they are in ``src/atelier`` (copies, not a second source), with an
``atelier/tracking/__init__.py`` that imports nothing, so that ``atelier.tracking.model``
loads without the adapter. :func:`model_requirements` names the distributions those
modules import, at the release series installed here.

``tests/tracking/test_model_environment.py`` holds both to the truth: it imports the staged tree on
its own and checks its imports against :data:`MODEL_DISTRIBUTIONS`, and it builds the
model's environment from the logged requirements alone and generates images there.
"""

from __future__ import annotations

import re
import shutil
from importlib.metadata import version
from pathlib import Path

import atelier

#: The modules the pyfunc imports, relative to the ``atelier`` package: the model, the
#: generator (``core/models.py`` with FastGAN's ``core/fastgan.py`` and their shared
#: ``core/layers.py``; it saves through ``core/storage.py``) and seeds ->
#: images (``core/generate.py``).
MODEL_MODULES = (
    "__init__.py",
    "core/__init__.py",
    "core/storage.py",
    "core/layers.py",
    "core/fastgan.py",
    "core/models.py",
    "core/generate.py",
    "tracking/model.py",
)
#: Distribution -> the top-level module :data:`MODEL_MODULES` import from it. torchvision
#: and Pillow come with ``core/generate.py`` (its sample grids); Pillow also writes the
#: ``png`` output. ``mlflow-skinny`` is MLflow's package for loading and serving models:
#: its pyfunc, its scoring server (FastAPI, uvicorn) and its REST client, without the
#: tracking server's SQL and UI dependencies.
MODEL_DISTRIBUTIONS = {
    "torch": "torch",
    "torchvision": "torchvision",
    "pillow": "PIL",
    "numpy": "numpy",
    "pandas": "pandas",
    "mlflow-skinny": "mlflow",
}
_TRACKING_INIT = ('"""The pyfunc model alone (the rest of the tracking adapter stays with '
                  'Atelier)."""\n')


def model_requirements() -> list[str]:
    """The model's pip requirements: each of :data:`MODEL_DISTRIBUTIONS` at the release
    series installed here (``torch~=2.14`` for torch 2.14.1+cu130: 2.14 or a later 2.x;
    no local ``+cu`` label, so pip picks the platform's own build)."""
    requirements = []
    for distribution in MODEL_DISTRIBUTIONS:
        series = re.match(r"\d+\.\d+", version(distribution)).group()
        requirements.append(f"{distribution}~={series}")
    return requirements


def stage_model_code(destination: Path) -> Path:
    """Copy :data:`MODEL_MODULES` to ``destination/atelier`` and return that folder, the
    ``code_paths`` entry of the logged model."""
    source = Path(atelier.__file__).parent
    package = Path(destination) / "atelier"
    for module in MODEL_MODULES:
        target = package / module
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / module, target)
    (package / "tracking" / "__init__.py").write_text(_TRACKING_INIT)
    return package
