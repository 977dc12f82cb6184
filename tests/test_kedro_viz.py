"""kedro-viz draws the project: ``kedro viz build`` (the static export of what ``kedro viz
run`` serves) opened in headless Chromium, every pipeline chosen in its menu in turn."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import chromium_page
from conftest import (
    _free_port,
    make_project_copy,
    run_kedro,
    stop_process_group,
    test_env,
    wait_for_http,
)

from atelier.pipeline_registry import register_pipelines

# kedro-viz's index.html asks Google for its "Inter" font; offline it falls back to a system
# font and draws the same graph. Nothing else may leave 127.0.0.1.
FONT_HOSTS = ("https://fonts.googleapis.com/", "https://fonts.gstatic.com/")
MENU = "[data-test=kedro-pipeline-selector]"
DRAWN_TASKS = "g.pipeline-node--task .pipeline-node__text"


@pytest.mark.slow
def test_kedro_viz_build_draws_every_pipeline_node(tmp_path):
    project = make_project_copy(tmp_path / "project")
    started = time.monotonic()
    run_kedro(project, "viz", "build", timeout=600)
    print(f"kedro viz build took {time.monotonic() - started:.1f} s")
    build = project / "build"
    expected = {name: sorted(node.name for node in pipeline.nodes)
                for name, pipeline in register_pipelines().items()}
    assert set(expected) >= {"sample_data", "data_ingestion", "preprocessing", "training",
                             "evaluation", "registration", "train", "__default__"}
    exported = json.loads((build / "api" / "main").read_text())
    assert {pipeline["id"] for pipeline in exported["pipelines"]} == set(expected)

    port = _free_port()
    with open(tmp_path / "http.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
             "--directory", str(build)],
            stdout=log, stderr=subprocess.STDOUT, env=test_env(), start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url, server, tmp_path / "http.log", "python -m http.server")
        offsite = _draw_each_pipeline(url, expected, tmp_path / "kedro-viz.png")
    finally:
        stop_process_group(server)
    assert [request for request in offsite if not request.startswith(FONT_HOSTS)] == []


def _draw_each_pipeline(url: str, expected: dict[str, list[str]], screenshot: Path) -> list[str]:
    """Choose each pipeline in kedro-viz's menu and check its drawn task nodes are exactly
    the pipeline's nodes; returns the off-site requests the page tried."""
    offsite: list[str] = []
    with chromium_page(offsite, width=1600, height=1000) as page:
        # No "new feature" pop-up over the graph (kedro-viz keeps its settings here).
        page.add_init_script(
            "window.localStorage.setItem('KedroViz', JSON.stringify({showFeatureHints: false}))")
        page.goto(url)
        page.wait_for_selector(DRAWN_TASKS)
        for name in [*sorted(set(expected) - {"__default__"}), "__default__"]:
            page.click(f"{MENU} .dropdown__label")
            page.click(f"{MENU} [role=option] [title='{name}']")
            assert _drawn_tasks(page, expected[name]) == expected[name], name
            assert page.inner_text(f"{MENU} .dropdown__label") == name
        page.goto(url)  # the default pipeline, freshly laid out, for the picture
        page.wait_for_selector(DRAWN_TASKS)
        page.wait_for_timeout(1500)  # kedro-viz animates the first layout
        page.screenshot(path=screenshot)
    return offsite


def _drawn_tasks(page, expected: list[str], timeout: float = 30) -> list[str]:
    """The task nodes drawn, sorted, once they are ``expected`` or ``timeout`` s passed."""
    deadline = time.monotonic() + timeout
    while True:
        drawn = sorted(page.locator(DRAWN_TASKS).all_text_contents())
        if drawn == expected or time.monotonic() > deadline:
            return drawn
        page.wait_for_timeout(200)
