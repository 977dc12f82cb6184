"""Who is champion: the side-by-side promotion rule, decided under a lock on the server.

Every new version gets the alias ``challenger``. It takes ``champion`` only when its FID,
scored side by side with the current champion's in one evaluation (the same validation
images, Inception weights, sample count, seeds and dims: ``metrics["champion"]``, see the
evaluation pipeline), is lower by at least ``registration.min_fid_improvement``, or when
there is no champion. Numbers stored by earlier evaluations (the versions' ``fid`` tags)
are for display only and never decide anything.

The read-compare-write of the champion runs under a lock held on the tracking server
itself (a lock entry created with ``create_registered_model``, which the server's database
lets only one caller create). If another registration changed the champion after this
candidate was evaluated, the side-by-side numbers no longer describe the current champion:
the new champion is scored the same way (``rescore``, outside the lock) and the decision is
taken again; without ``rescore`` the candidate stays challenger and the reason says so.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
INCOMPATIBLE_POLICIES = ("promote", "keep")
# rescore(version) -> the champion's side-by-side entry, as metrics["champion"] holds it.
Rescore = Callable[[str], dict]
# A champion that keeps changing while we re-score gives up after this many tries.
MAX_RESCORES = 3


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a candidate becomes champion, and why (written to the run and the version)."""

    promote: bool
    reason: str
    #: The champion's side-by-side entry the decision was taken on (None: no champion).
    champion: dict | None = None


def decide_promotion(candidate_fid: float, champion: dict | None, min_fid_improvement: float,
                     on_incompatible_champion: str = "keep") -> PromotionDecision:
    """The promotion rule on side-by-side scores (lower FID is better).

    ``champion`` is the evaluation's ``metrics["champion"]``: None when there was no
    champion (promote), ``{"version", "fid", ...}`` when it was scored with the candidate,
    or ``{"version", "incompatible": reason}`` when it could not be scored on this data
    (``on_incompatible_champion`` decides: ``promote`` or ``keep``). A non-finite candidate
    FID is never promoted.
    """
    if on_incompatible_champion not in INCOMPATIBLE_POLICIES:
        raise ValueError(f"registration.on_incompatible_champion must be one of "
                         f"{INCOMPATIBLE_POLICIES}, got {on_incompatible_champion!r}.")
    if not np.isfinite(candidate_fid):
        return PromotionDecision(False, f"candidate FID {candidate_fid} is not finite", champion)
    if champion is None:
        return PromotionDecision(True, f"no champion yet; FID {candidate_fid:.4f}")
    version = champion["version"]
    if champion.get("incompatible"):
        promote = on_incompatible_champion == "promote"
        return PromotionDecision(promote, (
            f"champion version {version} could not be scored on this data "
            f"({champion['incompatible']}); registration.on_incompatible_champion="
            f"{on_incompatible_champion}"), champion)
    champion_fid = float(champion["fid"])
    needed = champion_fid - min_fid_improvement
    side_by_side = f"scored side by side with champion version {version}"
    if candidate_fid <= needed:
        return PromotionDecision(True, (
            f"FID {candidate_fid:.4f} beats the champion's {champion_fid:.4f} by "
            f"{champion_fid - candidate_fid:.4f} (>= min_fid_improvement {min_fid_improvement}), "
            f"{side_by_side}"), champion)
    return PromotionDecision(False, (
        f"FID {candidate_fid:.4f} does not beat the champion's {champion_fid:.4f} by "
        f"min_fid_improvement {min_fid_improvement} (needed <= {needed:.4f}), {side_by_side}"),
        champion)


@contextmanager
def promotion_lock(
    client: MlflowClient, model_name: str, timeout_s: float = 300.0, stale_after_s: float = 600.0
) -> Iterator[None]:
    """Hold the promotion lock for ``model_name`` on the tracking server.

    The lock is a registered model named ``<model_name>-promotion-lock``: creating it
    succeeds for exactly one caller (a unique key in the server's database); the others
    wait and retry. A lock older than ``stale_after_s`` (its holder crashed) is broken.
    """
    lock_name = f"{model_name}-promotion-lock"
    holder = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(
                lock_name,
                tags={"holder": holder, "acquired_at": f"{time.time():.3f}"},
                description=f"Held by {holder} while it decides {model_name}'s champion; "
                "deleted right after. Safe to delete if older than a few minutes.",
            )
            break
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            acquired_at = float(client.get_registered_model(lock_name).tags.get("acquired_at", "0"))
            if time.time() - acquired_at > stale_after_s:
                logger.warning("Breaking a stale promotion lock %s (held since %.0f).", lock_name, acquired_at)
                client.delete_registered_model(lock_name)
                continue
        except MlflowException:
            continue  # released between our create and our read: try again at once
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Could not take the promotion lock {lock_name!r} within {timeout_s:.0f} s. "
                "If no registration is running, delete that registered model and retry."
            )
        time.sleep(0.1 + random.random() * 0.2)
    try:
        yield
    finally:
        client.delete_registered_model(lock_name)



def current_champion_version(client: MlflowClient, model_name: str) -> str | None:
    """The version that holds the ``champion`` alias now, or None."""
    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        return None


def promote_if_better(client: MlflowClient, model_name: str, version: str, metrics: dict,
                      min_fid_improvement: float, on_incompatible_champion: str = "keep",
                      rescore: Rescore | None = None) -> PromotionDecision:
    """Give ``version`` the challenger alias, and the champion alias if it beats the champion.

    ``metrics`` is the evaluation's output: ``fid`` and ``champion`` (the side-by-side score
    of the champion at evaluation time). Runs under :func:`promotion_lock`; when the
    champion changed since the evaluation, ``rescore(new_version)`` scores it the same way
    and the decision is taken again. Returns the decision; the caller writes the version's
    description once, with it (``registry.version_description``).
    """
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    scored = metrics.get("champion")
    for _ in range(MAX_RESCORES + 1):
        evaluated = scored["version"] if scored else None
        with promotion_lock(client, model_name):
            current = current_champion_version(client, model_name)
            if current == evaluated:
                decision = decide_promotion(float(metrics["fid"]), scored, min_fid_improvement,
                                            on_incompatible_champion)
                if decision.promote:
                    client.set_registered_model_alias(model_name, CHAMPION, version)
                break
        decision = PromotionDecision(False, (
            f"the champion changed while this model was evaluated (version {evaluated} was "
            f"scored, version {current} is champion now) and could not be scored again; run "
            "the evaluation and registration pipelines again to decide"), scored)
        if current is None:  # the champion alias was removed meanwhile: decide without one
            scored = None
        elif rescore is None:
            break
        else:
            logger.info("The champion changed from version %s to %s since the evaluation: "
                        "scoring version %s side by side.", evaluated, current, current)
            scored = rescore(current)
    logger.info("%s version %s: %s (%s)", model_name, version, decision_verdict(decision),
                decision.reason)
    return decision


def verdict(promote: bool) -> str:
    """A registration's outcome in the one wording the version description, the model card
    and the job summary all use: ``promoted to champion`` or ``challenger only``."""
    return "promoted to champion" if promote else "challenger only"


def decision_verdict(decision: PromotionDecision) -> str:
    """:func:`verdict` of ``decision``."""
    return verdict(decision.promote)


def decision_record(model_name: str, version: str, decision: PromotionDecision) -> dict:
    """The registration outcome as a plain dict (written to data/08_reporting): model name,
    version, ``promote``, ``reason`` and ``champion`` (the side-by-side entry decided on)."""
    return {"model_name": model_name, "version": int(version), **asdict(decision)}
