"""The GitHub Actions workflows: valid against GitHub's schema, clean under zizmor's audit.

Both tools come with the test extras and run offline: check-jsonschema validates against the
workflow schema it bundles, zizmor (``--offline``) audits permissions, checkout credentials,
action pins and template injection under the pin policy in ``zizmor.yml``.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN, PROJECT_ROOT

WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"
ZIZMOR_CONFIG = PROJECT_ROOT / "zizmor.yml"


def audit(*paths: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run ``zizmor --offline`` on ``paths``; return the process and its findings (medium+)."""
    result = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--config", str(ZIZMOR_CONFIG),
         "--min-severity", "medium", "--format", "json", *map(str, paths)],
        capture_output=True, text=True, timeout=120)
    # stdout is the JSON list of findings only when an audit ran (else it is empty).
    findings = json.loads(result.stdout) if result.stdout.strip() else []
    return result, [finding for finding in findings if not finding.get("ignored")]


def describe(findings: list[dict]) -> list[str]:
    return [f"{finding['ident']} ({finding['determinations']['severity']}): {finding['desc']}"
            for finding in findings]


def test_workflows_match_the_github_workflow_schema():
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert workflows, f"No workflows found under {WORKFLOWS}"
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
         *map(str, workflows)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_at_medium_or_above():
    result, findings = audit(WORKFLOWS)
    assert result.returncode == 0 and findings == [], (
        f"zizmor exited {result.returncode}:\n" + "\n".join(describe(findings)) + result.stderr)


# Each change undoes one of the fixes; zizmor must then report the audit named beside it,
# which shows the test above can fail.
CHECKOUT_WITHOUT_PERSIST_CREDENTIALS = (
    re.compile(r"\n +with:\n +persist-credentials: false[^\n]*"), "", "artipacked")
WRITE_ALL_PERMISSIONS = (
    re.compile(r"^( +)permissions:\n +contents: read[^\n]*$", re.MULTILINE),
    r"\1permissions: write-all", "excessive-permissions")
# zizmor.yml lets only GitHub's own actions/* stay on a tag; anyone else's needs a SHA.
THIRD_PARTY_ACTION_ON_A_TAG = (
    re.compile(r"uses: actions/setup-python@v\d+"), "uses: example-org/setup-python@v5",
    "unpinned-uses")


@pytest.mark.parametrize("pattern, replacement, expected_audit", [
    CHECKOUT_WITHOUT_PERSIST_CREDENTIALS, WRITE_ALL_PERMISSIONS, THIRD_PARTY_ACTION_ON_A_TAG,
], ids=["persisted-credentials", "write-all", "third-party-tag"])
@pytest.mark.parametrize("workflow", ["ci.yml", "retrain.yml"])
def test_zizmor_reports_a_weakened_workflow(tmp_path, workflow, pattern, replacement,
                                            expected_audit):
    original = (WORKFLOWS / workflow).read_text()
    weakened, count = pattern.subn(replacement, original)
    assert count >= 1, f"{workflow} no longer has what this test changes ({pattern.pattern})"
    (tmp_path / workflow).write_text(weakened)

    result, findings = audit(tmp_path / workflow)

    assert result.returncode != 0, result.stderr
    assert expected_audit in {finding["ident"] for finding in findings}, describe(findings)


def test_retrain_runner_comes_from_the_repository_variable():
    workflow = yaml.safe_load((WORKFLOWS / "retrain.yml").read_text())
    runs_on = workflow["jobs"]["retrain"]["runs-on"]
    # A team points RETRAIN_RUNNER at a self-hosted GPU runner; unset, GitHub's hosted runner.
    assert re.fullmatch(r"\$\{\{\s*vars\.RETRAIN_RUNNER\s*\|\|\s*'ubuntu-latest'\s*\}\}",
                        runs_on), runs_on
