"""Registration nodes: log, register and maybe promote the generator; write its model card.

The MLflow work itself lives in the tracking adapter (``atelier.tracking``).
"""

from __future__ import annotations

import pandas as pd

from atelier.core.metrics import (
    SCORE_NAMES,
    EvaluationConfig,
    load_evaluation_inception,
    score_beside,
)
from atelier.core.models import GeneratorCheckpoint, load_generator
from atelier.pipelines.evaluation.nodes import validation_images
from atelier.tracking import fine_tuned_from, register_generator_version, verdict


def register_generator(generator: GeneratorCheckpoint, metrics: dict, lineage: dict,
                       primary_images: dict, model_registry, evaluation: dict,
                       registration: dict) -> dict:
    """Register ``generator`` as a new model version and promote it if it beats the champion.

    Args:
        generator: The trained generator.
        metrics: Evaluation metrics: ``fid`` and the champion's side-by-side scores
            (``metrics["champion"]``) decide promotion.
        lineage: The run's lineage (git commit, data version), tagged on the version.
        primary_images: The validation images, to score a champion that another
            registration promoted while this run was evaluated, as the evaluation would.
        model_registry: The catalog's ``model_registry`` (that champion's generator).
        evaluation: ``params:evaluation`` (how that champion is scored).
        registration: ``params:registration`` (``model_name``, ``min_fid_improvement``,
            ``on_incompatible_champion``).

    Returns:
        The registration record: model name, version, run id, lineage, the decision, its
        reason and the champion scores it was taken on.
    """
    config = EvaluationConfig.from_params(evaluation)

    def rescore(version: str) -> dict:
        champion = model_registry.version(registration["model_name"], version)
        reference = validation_images(primary_images)
        return score_beside(version, load_generator(champion.generator), reference,
                            load_evaluation_inception(config), config)

    return register_generator_version(generator, metrics, lineage, registration, rescore)


def write_model_card(
    registration_record: dict, metrics: dict, loss_history: pd.DataFrame,
    preprocessing: dict, training: dict,
) -> str:
    """A markdown model card for the registered version: samples, metrics, data, parameters.

    Images are referenced by their artifact names in the same run (``generated_samples.png``,
    ``loss_curve.png``), so the card reads correctly in the MLflow UI's artifact view.
    """
    record = registration_record
    lines = [
        f"# {record['model_name']} version {record['version']}",
        "",
        f"Status at registration: **{verdict(record['promote'])}** — {record['reason']}.",
        "",
        f"- run: `{record['run_id']}`  ",
        f"- git commit: `{record.get('git_commit', 'unknown')}`  ",
        f"- data version: `{record.get('data_version', 'unknown')}`  ",
        *([f"- {fine_tuned_from(record['parent'])}  "] if record.get("parent") else []),
        f"- load it: `mlflow.pyfunc.load_model(\"{record['model_uri']}\")`",
        *_onnx_lines(record),
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
    champion = metrics.get("champion") or {}
    if "fid" in champion:
        lines += ["", f"Scored side by side with champion version {champion['version']} (same "
                  "validation images, Inception weights, samples, seeds and dims):", "",
                  "| metric | this version | champion |", "| --- | --- | --- |"]
        lines += [f"| {key} | {metrics[key]} | {champion[key]} |" for key in SCORE_NAMES]
    elif champion.get("incompatible"):
        lines += ["", f"Champion version {champion['version']} could not be scored on this data: "
                  f"{champion['incompatible']}."]
    if metrics.get("inception_weights_warning"):
        lines += ["", f"> **WARNING:** {metrics['inception_weights_warning']}"]
    lines += ["", "## Which weights", "", _selection_sentence(metrics, training)]
    lines += ["", "## Training curve", "", "![losses](loss_curve.png)", ""]
    if len(loss_history):
        last = loss_history.iloc[-1]
        lines.append(f"Final step {int(last['step'])}: loss_d {last['loss_d']:.4f}, "
                     f"loss_g {last['loss_g']:.4f}, {last['images_per_sec']:.0f} images/s.")
        if "augment_p" in loss_history.columns:
            lines.append(f"Adaptive augmentation (training.ada): strength p {last['augment_p']:.3f} "
                         f"at the last step, from {float(training['augment_p']):.3f} at the "
                         f"start (target r_t {training['ada_target']}).")
    lines += ["", "## Parameters", "", "| parameter | value |", "| --- | --- |"]
    for section, values in (("preprocessing", preprocessing), ("training", training)):
        for key, value in sorted(values.items()):
            lines.append(f"| {section}.{key} | {value} |")
    return "\n".join(lines) + "\n"


def _onnx_lines(record: dict) -> list[str]:
    """The model card's section on the ONNX export (``registration.onnx``), when it was
    logged: the file and its seed latents are artifacts of the same run, under ``onnx/``."""
    if not record.get("onnx_uri"):
        return []
    file, latents = (uri.split("/", 2)[2] for uri in (record["onnx_uri"], record["onnx_latents_uri"]))
    return ["", "## Outside Python (ONNX)", "",
            f"[{file}]({file}) (`{record['onnx_uri']}`): this generator as an ONNX file for ONNX "
            "Runtime and game engines, checked against PyTorch at registration. "
            f"[{latents}]({latents}) (`{record['onnx_latents_uri']}`): the latents of the seeds "
            "the gallery shows first, to draw their images outside Python. Download: "
            f"`mlflow artifacts download -u {record['onnx_uri']} -d .` (README, \"Using a "
            "generator outside Python\")."]


def _selection_sentence(metrics: dict, training: dict) -> str:
    variant = "EMA" if metrics.get("generator_variant") == "ema" else "raw (not averaged)"
    step = metrics.get("generator_step")
    if training.get("eval_every"):
        return (f"The {variant} generator of step {step}: the best by {training['select_by']} of "
                f"the evaluations every {training['eval_every']} steps during training (each "
                "scored the EMA and the raw generator), not merely the last.")
    return f"The {variant} generator of the last step, {step} (model selection was off)."
