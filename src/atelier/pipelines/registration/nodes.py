"""Registration nodes: log, register and maybe promote the generator; write its model card.

The MLflow work itself lives in the tracking adapter (``atelier.tracking``).
"""

from __future__ import annotations

import pandas as pd

from atelier.core.metrics import SCORE_NAMES
from atelier.core.models import GeneratorCheckpoint
from atelier.tracking import register_generator_version


def register_generator(generator: GeneratorCheckpoint, metrics: dict, lineage: dict,
                       registration: dict) -> dict:
    """Register ``generator`` as a new model version and promote it if it beats the champion.

    Args:
        generator: The trained generator.
        metrics: Evaluation metrics; ``metrics["fid"]`` decides promotion.
        lineage: The run's lineage (git commit, data version), tagged on the version.
        registration: ``params:registration`` (``model_name``, ``min_fid_improvement``).

    Returns:
        The registration record: model name, version, run id, lineage, the decision and
        its reason.
    """
    return register_generator_version(generator, metrics, lineage, registration["model_name"],
                                      registration["min_fid_improvement"])


def write_model_card(
    registration_record: dict, metrics: dict, loss_history: pd.DataFrame,
    preprocessing: dict, training: dict,
) -> str:
    """A markdown model card for the registered version: samples, metrics, data, parameters.

    Images are referenced by their artifact names in the same run (``generated_samples.png``,
    ``loss_curve.png``), so the card reads correctly in the MLflow UI's artifact view.
    """
    record = registration_record
    verdict = "champion" if record["promote"] else "challenger"
    lines = [
        f"# {record['model_name']} version {record['version']}",
        "",
        f"Status at registration: **{verdict}** — {record['reason']}.",
        "",
        f"- run: `{record['run_id']}`  ",
        f"- git commit: `{record.get('git_commit', 'unknown')}`  ",
        f"- data version: `{record.get('data_version', 'unknown')}`  ",
        f"- load it: `mlflow.pyfunc.load_model(\"{record['model_uri']}\")`",
        "",
        "## Samples",
        "",
        "![generated samples](generated_samples.png) ![real validation images](real_samples.png)",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key in (*SCORE_NAMES, "num_samples", "dims"):
        if key in metrics:
            lines.append(f"| {key} | {metrics[key]} |")
    if metrics.get("inception_weights_warning"):
        lines += ["", f"> **WARNING:** {metrics['inception_weights_warning']}"]
    lines += ["", "## Training curve", "", "![losses](loss_curve.png)", ""]
    if len(loss_history):
        last = loss_history.iloc[-1]
        lines.append(f"Final step {int(last['step'])}: loss_d {last['loss_d']:.4f}, "
                     f"loss_g {last['loss_g']:.4f}, {last['images_per_sec']:.0f} images/s.")
    lines += ["", "## Parameters", "", "| parameter | value |", "| --- | --- |"]
    for section, values in (("preprocessing", preprocessing), ("training", training)):
        for key, value in sorted(values.items()):
            lines.append(f"| {section}.{key} | {value} |")
    return "\n".join(lines) + "\n"
