"""Model selection keeps the best scored generator, not the last one.

The in-training scorer here is a fixed schedule of scores (one per call, the EMA then the
raw generator at each evaluation): what is tested is the loop's bookkeeping, which must
not depend on how a real Inception scorer happens to rank a chaotic tiny GAN on a given
CPU. The real scorer's part (scores recorded live, the registered weights re-scored to the
recorded value) is ``tests/pipelines/training/test_model_selection.py``.
"""

from __future__ import annotations

import pytest
import torch
from training_cases import (  # noqa: F401 (one_thread: an autouse fixture)
    DATA_HASH,
    checkpoints,
    one_thread,
    synthetic_images,
    tiny_params,
)

from atelier.core.training import TrainingConfig, train_gan

# Evaluations at steps 4, 8 and 12, the EMA scored before the raw generator each time:
# the best is the raw generator of step 8, in the middle of the run.
SCHEDULE = [0.5, 0.4, 0.3, 0.1, 0.6, 0.7]


class ScheduledScorer:
    """Returns the next score of ``scores`` on each call, and remembers what it was given."""

    def __init__(self, scores: list[float]) -> None:
        self.scores, self.seen = list(scores), []

    def __call__(self, generator: torch.nn.Module) -> dict[str, float]:
        self.seen.append({key: value.clone() for key, value in generator.state_dict().items()})
        value = self.scores[len(self.seen) - 1]
        return {"kid": value, "fid": 100 * value}


def test_the_best_scored_generator_is_returned_not_the_last(tmp_path):
    config = TrainingConfig.from_params(tiny_params(tmp_path, max_steps=12, eval_every=4,
                                                    checkpoint_every=4, select_by="kid"))
    scorer = ScheduledScorer(SCHEDULE)
    result = train_gan(synthetic_images(), config, data_hash=DATA_HASH, scorer=scorer)

    assert len(scorer.seen) == len(SCHEDULE)
    assert [(s["step"], s["variant"], s["kid"]) for s in result.scores] == [
        (4, "ema", 0.5), (4, "raw", 0.4), (8, "ema", 0.3), (8, "raw", 0.1),
        (12, "ema", 0.6), (12, "raw", 0.7)]
    assert (result.step, result.variant) == (8, "raw")
    assert (result.checkpoint.step, result.checkpoint.variant) == (8, "raw")
    # The weights are the raw generator's of step 8 (as its checkpoint holds them and the
    # scorer saw them), not the last step's, nor the EMA's of step 8.
    step_8 = next(path for path in checkpoints(tmp_path) if path.name == "step_00000008.pt")
    raw_8 = torch.load(step_8, weights_only=True)["generator"]
    chosen = result.checkpoint.state_dict
    assert chosen.keys() == raw_8.keys()
    assert all(torch.equal(chosen[key], raw_8[key]) for key in raw_8)
    assert all(torch.equal(chosen[key], scorer.seen[3][key]) for key in raw_8)
    for other in (scorer.seen[2], scorer.seen[5]):  # the EMA of step 8, the raw of step 12
        assert any(not torch.equal(chosen[key], other[key]) for key in raw_8)


@pytest.mark.slow
def test_a_resumed_run_remembers_the_best_of_before_the_interruption(tmp_path):
    """Steps 1-8 in one run, 9-12 in a resumed one: the step-8 generator still wins."""
    params = tiny_params(tmp_path, eval_every=4, checkpoint_every=4, select_by="kid")
    first = train_gan(synthetic_images(), TrainingConfig.from_params({**params, "max_steps": 8}),
                      data_hash=DATA_HASH, scorer=ScheduledScorer(SCHEDULE[:4]))
    assert (first.step, first.variant) == (8, "raw")
    resumed = train_gan(synthetic_images(), TrainingConfig.from_params({**params, "max_steps": 12}),
                        data_hash=DATA_HASH, scorer=ScheduledScorer(SCHEDULE[4:]))
    assert [s["step"] for s in resumed.scores] == [4, 4, 8, 8, 12, 12]
    assert (resumed.step, resumed.variant) == (8, "raw")
    assert all(torch.equal(resumed.checkpoint.state_dict[key], value)
               for key, value in first.checkpoint.state_dict.items())
