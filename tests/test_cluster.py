"""``torchrun --nnodes=2 ... -m atelier.cluster``: two "nodes" (two torchrun agents on this
machine, c10d rendezvous on 127.0.0.1) train and score one Kedro run: one MLflow run, one
version."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import BIN, TINY_TRAIN_PARAMS, _free_port, test_env
from mlflow.tracking import MlflowClient


def torchrun_node(project, port: int, log, env: dict, params: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "torchrun"), "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
         f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=atelier-test", "-m", "atelier.cluster",
         "--pipeline=train", f"--params={params}"],
        cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_two_node_torchrun_trains_one_run_from_shards_and_registers_one_version(
        kedro_project, sample_images_dir, standin_torch_home, mlflow_server, tmp_path):
    shutil.copytree(sample_images_dir, kedro_project / "data" / "01_raw" / "images")
    env = test_env(MLFLOW_TRACKING_URI=mlflow_server, TORCH_HOME=str(standin_torch_home),
                   OMP_NUM_THREADS="1")
    # Shards small enough that each node streams its own share of the training split.
    params = (TINY_TRAIN_PARAMS + ",preprocessing.storage=shards,preprocessing.shard_mb=0.2"
              ",training.batch_size=32")
    port = _free_port()
    logs = [open(tmp_path / f"node{n}.log", "w") for n in range(2)]  # noqa: SIM115 - closed below
    try:
        nodes = [torchrun_node(kedro_project, port, log, env, params) for log in logs]
        codes = [node.wait(timeout=900) for node in nodes]
    finally:
        for log in logs:
            log.close()
    output = [(tmp_path / f"node{n}.log").read_text() for n in range(2)]
    assert codes == [0, 0], "\n\n".join(text[-5000:] for text in output)
    text = "\n".join(output)
    # The rank that ran no Kedro trained its share of the shards and scored its share of
    # the evaluation's seeds, then left with rank 0.
    assert "Rank 1: TrainingJob from rank 0" in text and "Rank 1: ScoringJob from rank 0" in text
    assert "Rank 1: 2 job(s) done" in text
    assert "training images on this rank" in text and "1 channel(s)" in text
    client = MlflowClient(mlflow_server)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, [run.info.run_name for run in runs]
    versions = client.search_model_versions("name='atelier-generator'")
    assert [version.run_id for version in versions] == [runs[0].info.run_id]
    assert runs[0].data.params["preprocessing.storage"] == "shards"
    assert {"fid", "kid", "inception_score"} <= set(runs[0].data.metrics)
    assert runs[0].data.tags["shards_location"].startswith("data/03_primary/shards/")
    assert list((kedro_project / "data" / "03_primary" / "shards").glob("*/index.json"))
