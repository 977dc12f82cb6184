"""Runs starting at once on a new tracking server share one experiment
(src/atelier/tracking/store.py ``ensure_experiment``, called by hooks/experiment.py before
kedro-mlflow's own lookup-then-create), against a real ``mlflow server``.

Two scheduled retrainings started together on a new server once failed here: both looked
the experiment up, found nothing, and the second create was refused
(``RESOURCE_ALREADY_EXISTS``), killing that run before its first node.
"""

from __future__ import annotations

import threading

import pytest
from mlflow.tracking import MlflowClient

from atelier.tracking import ensure_experiment

RACERS = 8


def _race(url: str, name: str) -> tuple[list[str], list[BaseException]]:
    start = threading.Barrier(RACERS)
    ids: list[str] = []
    errors: list[BaseException] = []

    def racer() -> None:
        client = MlflowClient(tracking_uri=url)
        start.wait()
        try:
            ids.append(ensure_experiment(client, name, tags={"team": "art"}))
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    threads = [threading.Thread(target=racer) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return ids, errors


@pytest.mark.slow
def test_racing_runs_all_get_the_one_experiment(mlflow_server):  # one server: two checks
    for attempt in range(3):  # a few fresh names: each is a new race
        name = f"studio-{attempt}"
        ids, errors = _race(mlflow_server, name)
        assert not errors, errors
        assert len(ids) == RACERS and len(set(ids)) == 1
        experiment = MlflowClient(tracking_uri=mlflow_server).get_experiment(ids[0])
        assert experiment.name == name and experiment.tags.get("team") == "art"
    names = [e.name for e in MlflowClient(tracking_uri=mlflow_server).search_experiments()]
    assert sorted(n for n in names if n.startswith("studio-")) == ["studio-0", "studio-1",
                                                                  "studio-2"]
    # An existing experiment is returned, not created again.
    client = MlflowClient(tracking_uri=mlflow_server)
    existing = client.create_experiment("atelier")
    assert ensure_experiment(client, "atelier") == existing
    assert len([e for e in client.search_experiments() if e.name == "atelier"]) == 1
