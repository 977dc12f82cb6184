"""Registration nodes: the MLflow registry work itself lives in ``atelier.registry``."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from atelier import registry


def register_generator(generator: dict, metrics: dict, params: dict) -> dict:
    """Log ``generator`` as a pyfunc model in the active run, register it, maybe promote it.

    Args:
        generator: ``{"config", "state_dict"}`` of the EMA generator.
        metrics: evaluation metrics; ``metrics["fid"]`` decides promotion.
        params: ``registration`` parameters (``model_name``, ``min_fid_improvement``).

    Returns:
        The registration record: model name, version, run id, lineage, the decision and
        its reason. The decision is also tagged on the run and written to the version's
        description.
    """
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError(
            "Registration needs an active MLflow run: run it through `kedro run` with "
            "kedro-mlflow enabled (conf/base/mlflow.yml), not with tracking disabled."
        )
    client = MlflowClient()
    model_name = params["model_name"]
    info = registry.log_generator_model(generator, model_name)
    version = str(info.registered_model_version)
    run_tags = client.get_run(run.info.run_id).data.tags
    lineage = {key: run_tags[key] for key in ("git_commit", "data_version", "data_content_hash")
               if key in run_tags}
    version_tags = {
        **{key: str(metrics[key]) for key in ("fid", "inception_score", "kid") if key in metrics},
        "fid_dims": str(metrics.get("dims", "")),
        "inception_weights_sha256": str(metrics.get("inception_weights_sha256", "")),
        "run_id": run.info.run_id,
        **lineage,
    }
    if metrics.get("inception_weights_warning"):
        version_tags["inception_weights_warning"] = metrics["inception_weights_warning"]
    for key, value in version_tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    decision = registry.promote_if_better(
        client, model_name, version, float(metrics["fid"]), float(params["min_fid_improvement"])
    )
    mlflow.set_tags({"registration.version": version,
                     "registration.promoted": str(decision.promote).lower(),
                     "registration.reason": decision.reason})
    return {**registry.decision_record(model_name, version, decision),
            "run_id": run.info.run_id, "model_uri": f"models:/{model_name}/{version}", **lineage}


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
    for key in ("fid", "inception_score", "inception_score_std", "kid", "kid_std", "num_samples", "dims"):
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
