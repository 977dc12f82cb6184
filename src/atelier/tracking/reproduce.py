"""Reproduce a recorded run: check code and data match it, re-run it, compare the results.

    python -m atelier.reproduce RUN_ID [--tracking-uri URI] [--rel-tolerance R]

It checks out nothing by itself. First it compares the working tree with what the run
recorded (tags ``git_commit``, ``git_dirty``, ``data_hash``, ``data_version``
and the artifact ``manifest.parquet``). If anything differs it prints exactly what, and
the commands that get there (``git checkout``, ``dvc checkout``), and exits with status 2.

A fine-tuned run also needs its parent: the very training state it started from
(``parent_training_state_sha256``), fetched from the parent's run whatever its alias
points at now; when that run or its artifact is gone it says so and exits with status 2.

When code, data (and parent) match, it re-runs ``data_ingestion``, ``preprocessing``, ``training``
and ``evaluation`` (not registration) with the run's recorded parameters (the artifact
``config/parameters.json``), training from scratch into a temporary checkpoint folder,
and compares:

- the generator's weights (``generator_sha256``): on the CPU with
  ``training.deterministic: true`` they must be bit-identical;
- the metrics (``fid``, ``inception_score``, ``kid``): equal on the CPU; on a GPU, within
  ``--rel-tolerance`` (printed).

Exit status: 0 reproduced, 1 results differ, 2 code, data or parent differ (nothing was
run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from atelier.core.errors import ParentModelError
from atelier.core.metrics import SCORE_NAMES
from atelier.core.models import GeneratorCheckpoint
from atelier.core.storage import state_dict_sha256
from atelier.tracking.lineage import dvc_data_version, folder_files, git_state
from atelier.tracking.parents import resolve_parent
from atelier.tracking.store import configured_store

# Set by ``python -m atelier.reproduce`` for the run it starts (the lineage hook tags it).
REPRODUCES_ENV = "ATELIER_REPRODUCES_RUN_ID"

COMPARED_METRICS = SCORE_NAMES
RERUN_PIPELINES = "data_ingestion,preprocessing,training,evaluation"


@dataclass
class Drift:
    """How the working tree differs from a recorded run, and how to get back to it."""

    differences: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.differences)


def compare_code(project: Path, tags: dict[str, str], drift: Drift) -> None:
    """Record in ``drift`` whether HEAD and the tracked files match the run's commit."""
    recorded = tags.get("git_commit")
    state = git_state(project)
    if recorded is None:
        drift.differences.append("code: the run recorded no git_commit (it ran outside git)")
        return
    if state is None:
        drift.differences.append(f"code: {project} is not a git checkout; the run used {recorded}")
        drift.commands.append(f"git clone <repository> && git checkout {recorded}")
        return
    if state.commit != recorded:
        drift.differences.append(f"code: HEAD is {state.commit}, the run used {recorded}")
        drift.commands.append(f"git checkout {recorded}")
    if state.dirty:
        drift.differences.append("code: tracked files have uncommitted changes")
        drift.commands.insert(0, "git stash   # or commit your changes elsewhere")
    if tags.get("git_dirty") == "true":
        drift.differences.append(
            f"code: the run itself had uncommitted changes on top of {recorded[:12]}; "
            "it cannot be reproduced exactly from git"
        )


def compare_data(project: Path, run_id: str, tags: dict[str, str], params: dict,
                 client: MlflowClient, drift: Drift) -> None:
    """Record in ``drift`` which image files differ from the ones the run read."""
    source = Path(params.get("ingestion", {}).get("source", "data/01_raw/images"))
    folder = source if source.is_absolute() else project / source
    recorded_dvc = tags.get("data_version", "")
    current_dvc = dvc_data_version(project, source)
    if recorded_dvc.startswith("dvc:") and recorded_dvc[4:] != (current_dvc or ""):
        drift.differences.append(
            f"data: {source}.dvc records {current_dvc or 'nothing'}, the run used {recorded_dvc[4:]}"
        )
    if not folder.is_dir():
        drift.differences.append(f"data: {source} is missing (the run read a folder there)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = pd.read_parquet(
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="manifest.parquet",
                                                    dst_path=tmp, tracking_uri=client.tracking_uri)
            )
        recorded = dict(zip(manifest["path"], manifest["sha256"], strict=True))
        current = folder_files(folder)
        for path in sorted(set(recorded) | set(current)):
            if path not in current:
                drift.differences.append(f"data: {source}/{path} is missing")
            elif path not in recorded:
                drift.differences.append(f"data: {source}/{path} is new (the run did not read it)")
            elif recorded[path] != current[path]:
                drift.differences.append(
                    f"data: {source}/{path} changed (sha256 {recorded[path][:12]}… in the run, "
                    f"{current[path][:12]}… now)"
                )
    if any(line.startswith("data:") for line in drift.differences):
        commit = tags.get("git_commit", "<commit>")
        if (project / f"{source}.dvc").exists() or recorded_dvc.startswith("dvc:"):
            drift.commands += [f"git checkout {commit} -- {source}.dvc",
                               f"dvc checkout {source}.dvc   # dvc pull {source}.dvc if not cached"]
        else:
            drift.commands.append(f"restore {source} to the files listed in the run's manifest.parquet")


def compare_parent(tags: dict[str, str], params: dict, client: MlflowClient, drift: Drift) -> None:
    """A fine-tuned run: fetch the very parent it started from (by its run, checked against
    the recorded ``parent_training_state_sha256``, whatever the alias it named points at
    now) and pin ``training.init_from`` to it for the re-run; record in ``drift`` when that
    parent is gone or changed."""
    recorded = tags.get("parent_training_state_sha256")
    if not recorded:
        return
    what = tags.get("parent_model", "the parent")
    source = f"runs:/{tags['parent_run_id']}" if tags.get("parent_run_id") else tags.get("init_from", "")
    try:
        parent = resolve_parent(source, client)
    except ParentModelError as error:
        drift.differences.append(f"parent: {what}, which the run was fine-tuned from, is gone: "
                                 f"{error}")
        drift.commands.append("restore the parent's run and its training_state.pt artifact "
                              "(or its file), or reproduce the parent's own run first")
        return
    found = parent.identity["training_state_sha256"]
    if found != recorded:
        drift.differences.append(f"parent: {source} now holds training state {found[:12]}, the "
                                 f"run started from {recorded[:12]}")
        return
    params.setdefault("training", {})["init_from"] = source
    print(f"Parent: {what} ({source}), training state {found[:12]} as recorded.")


def rerun(project: Path, run_id: str, params: dict, python: str) -> subprocess.CompletedProcess:
    """Run the pipelines again with ``params`` (a fresh checkpoint folder) in ``project``."""
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "conf"
        shutil.copytree(project / "conf", conf, ignore=shutil.ignore_patterns("local"))
        (conf / "local").mkdir(exist_ok=True)
        (conf / "reproduce").mkdir()
        recorded = json.loads(json.dumps(params))
        recorded.setdefault("training", {})["checkpoint_dir"] = str(Path(tmp) / "checkpoints")
        (conf / "reproduce" / "parameters.yml").write_text(yaml.safe_dump(recorded))
        env = {**os.environ, REPRODUCES_ENV: run_id, "KEDRO_DISABLE_TELEMETRY": "true"}
        return subprocess.run(
            [python, "-m", "kedro", "run", "--pipelines", RERUN_PIPELINES,
             "--conf-source", str(conf), "--env", "reproduce"],
            cwd=project, env=env, text=True,
        )


def compare_results(project: Path, run, tolerance: float, exact: bool) -> list[str]:
    """Differences between the re-run's outputs and the recorded run's (empty if none)."""
    problems = []
    generator = GeneratorCheckpoint.load(project / "data/06_models/generator.pt")
    new_hash = state_dict_sha256(generator.state_dict)
    old_hash = run.data.tags.get("generator_sha256")
    print(f"generator sha256: recorded {old_hash}\n                  re-run   {new_hash}")
    if exact and new_hash != old_hash:
        problems.append("generator weights differ")
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    for name in COMPARED_METRICS:
        old, new = run.data.metrics.get(name), metrics.get(name)
        if old is None or new is None:
            continue
        allowed = 0.0 if exact else tolerance * abs(old)
        ok = abs(new - old) <= allowed  # exact: allowed is 0, so only equality passes
        print(f"{name}: recorded {old!r}, re-run {new!r}, allowed difference {allowed:.3g} "
              f"-> {'ok' if ok else 'DIFFERS'}")
        if not ok:
            problems.append(f"{name} differs: {old!r} vs {new!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atelier.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_id")
    parser.add_argument("--tracking-uri", default=None,
                        help="default: $MLFLOW_TRACKING_URI, else the store conf/*/mlflow.yml "
                             "of --project configures (as kedro run writes it)")
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--rel-tolerance", type=float, default=0.02,
                        help="allowed relative metric difference when the run used a GPU")
    args = parser.parse_args(argv)

    project = args.project.resolve()
    uri = configured_store(args.tracking_uri, start=project).tracking_uri
    client = MlflowClient(uri)
    run = client.get_run(args.run_id)
    tags = run.data.tags
    with tempfile.TemporaryDirectory() as tmp:
        params = json.loads(Path(mlflow.artifacts.download_artifacts(
            run_id=args.run_id, artifact_path="config/parameters.json", dst_path=tmp,
            tracking_uri=uri)).read_text())

    drift = Drift()
    compare_code(project, tags, drift)
    compare_data(project, args.run_id, tags, params, client, drift)
    compare_parent(tags, params, client, drift)
    if drift:
        print(f"The working tree does not match run {args.run_id}:")
        for line in drift.differences:
            print(f"  - {line}")
        print("To get there (then run this command again):")
        for command in dict.fromkeys(drift.commands):
            print(f"  {command}")
        return 2

    exact = tags.get("training_device", "cpu").startswith("cpu") and bool(
        params.get("training", {}).get("deterministic"))
    print(f"Code and data match run {args.run_id}; re-running with its parameters "
          f"({'bit-exact comparison' if exact else f'tolerance {args.rel_tolerance:.1%}'}).")
    if rerun(project, args.run_id, params, sys.executable).returncode != 0:
        print("The re-run failed; see its log above.")
        return 1
    problems = compare_results(project, run, args.rel_tolerance, exact)
    if problems:
        print("NOT reproduced: " + "; ".join(problems))
        return 1
    print(f"Reproduced run {args.run_id}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
