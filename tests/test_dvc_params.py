"""dvc.yaml's stage parameters are exactly the parameters each Kedro pipeline reads.

A stage whose pipeline reads a parameter that dvc.yaml does not list would not rerun when
it changes (``dvc repro`` would keep a generator selected under other evaluation
settings); a listed parameter no node reads reruns a stage for nothing.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from atelier.pipeline_registry import TRAIN_PIPELINES, register_pipelines

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Read by a stage but deliberately not listed: they change how fast it runs, not what it
# writes (a stage must not rerun because a machine has more cores).
SPEED_ONLY = {"preprocessing.workers"}


def _covers(key: str, reads: str) -> bool:
    return reads == key or reads.startswith(key + ".")


def test_every_stage_lists_exactly_the_parameters_its_pipeline_reads():
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    pipelines = register_pipelines()
    assert set(stages) == set(TRAIN_PIPELINES)
    for name, stage in stages.items():
        listed = {key for entry in stage.get("params", []) for keys in entry.values() for key in keys}
        for entry in stage.get("params", []):
            for file, keys in entry.items():
                defined = yaml.safe_load((PROJECT_ROOT / file).read_text())
                for key in keys:
                    assert key.split(".")[0] in defined, f"{name}: {key} is not in {file}"
        reads = {item.removeprefix("params:") for item in pipelines[name].inputs()
                 if item.startswith("params:")}
        missing = sorted(r for r in reads - SPEED_ONLY if not any(_covers(key, r) for key in listed))
        unused = sorted(key for key in listed
                        if not any(_covers(key, r) or _covers(r, key) for r in reads))
        assert not missing, f"dvc.yaml stage {name} does not list {missing}, which it reads"
        assert not unused, f"dvc.yaml stage {name} lists {unused}, which no node reads"
