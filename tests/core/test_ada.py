"""atelier.core.ada: the StyleGAN2-ADA controller of the augmentation probability p."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atelier.core.ada import AdaptiveAugment
from atelier.core.augment import diff_augment
from atelier.core.models import Discriminator

BATCH = 8


def _logits(positive: int, total: int = BATCH) -> torch.Tensor:
    """``total`` logits of which ``positive`` are positive and the rest negative."""
    return torch.tensor([2.5] * positive + [-0.7] * (total - positive))


def _train_on_tiny_set(ada: AdaptiveAugment, steps: int, feedback: bool,
                       seed: int = 0) -> list[float]:
    """Hinge-train a small conv D on 8 fixed images against noise, feeding its real logits
    to ``ada``; with ``feedback`` D sees both batches augmented at strength ``ada.p``."""
    torch.manual_seed(seed)
    stream = torch.Generator().manual_seed(seed)
    real = torch.rand(BATCH, 1, 16, 16, generator=stream) * 2 - 1
    discriminator = Discriminator(resolution=16, channels=1, d_width=8)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-3, betas=(0.5, 0.99))
    rts = []
    for _ in range(steps):
        fake = torch.randn(BATCH, 1, 16, 16, generator=stream).clamp(-1, 1)
        strength = ada.p if feedback else 0.0
        real_logits = discriminator(diff_augment(real, "color,translation", stream, strength))
        fake_logits = discriminator(diff_augment(fake, "color,translation", stream, strength))
        loss = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ada.accumulate(real_logits)
        r_t = ada.step(BATCH)
        if r_t is not None:
            rts.append(r_t)
    return rts


def test_p_rises_against_a_discriminator_that_memorises_a_tiny_set():
    # 1 kimg: each adjustment moves p by 8 * 4 / 1000 = 0.032, 25 adjustments in 100 steps.
    ada = AdaptiveAugment(ada_kimg=1.0, interval=4)
    rts = _train_on_tiny_set(ada, steps=100, feedback=False)
    assert len(rts) == 25
    assert ada.last_rt == rts[-1] > ada.target
    assert ada.p > 0.5  # 0.8 here: every adjustment but the first went up


def test_augmenting_at_p_holds_the_memorising_discriminator_near_the_target():
    # The closed loop: D sees its images augmented at p, which p raises until D's logits on
    # reals are no longer mostly positive. Without the feedback p would reach 1.
    ada = AdaptiveAugment(ada_kimg=0.5, interval=4)
    rts = _train_on_tiny_set(ada, steps=100, feedback=True)
    assert 0.1 < ada.p < 0.6
    assert any(r_t > ada.target for r_t in rts) and any(r_t < ada.target for r_t in rts)


def test_p_falls_monotonically_below_the_target_and_stops_at_zero():
    ada = AdaptiveAugment(p=0.8, ada_kimg=0.1, interval=4)  # 0.32 per adjustment
    ps = [ada.p]
    for step in range(1, 6 * 4 + 1):
        # 6 of 8 positive: r_t = 0.5, mostly positive yet below the target 0.6.
        ada.accumulate(_logits(6))
        r_t = ada.step(BATCH)
        assert (r_t is None) == (step % 4 != 0)
        if r_t is not None:
            assert r_t == 0.5
            ps.append(ada.p)
    assert ps == sorted(ps, reverse=True)
    assert all(later < earlier for earlier, later in zip(ps, ps[1:], strict=False)
               if earlier > 0)
    assert min(ps) == 0.0 and ps[-1] == 0.0  # clamped, never negative


def test_p_stops_at_one_when_every_real_logit_is_positive():
    ada = AdaptiveAugment(p=0.9, ada_kimg=0.1, interval=2)
    for _ in range(6):
        ada.accumulate(_logits(BATCH))
        ada.step(BATCH)
    assert ada.p == 1.0 and ada.last_rt == 1.0


def test_one_adjustment_gives_the_formula_exactly():
    ada = AdaptiveAugment(target=0.6, ada_kimg=0.25, interval=2, p=0.5)
    assert ada.last_rt is None
    ada.accumulate(_logits(7))
    ada.accumulate(torch.tensor([[1.0], [-3.0], [0.0], [4.0]]))  # an exact zero counts 0
    assert ada.step(4, world_size=2) is None
    assert ada.p == 0.5
    ada.accumulate(-_logits(4, total=4))
    r_t = ada.step(4, world_size=2)
    # signs: 7 - 1 (first), 1 - 1 + 0 + 1 (second), -4 (third): 3 over 16 logits.
    assert r_t == 3 / 16 == ada.last_rt
    assert ada.p == 0.5 - 4 * 2 * 2 / (0.25 * 1000)  # r_t < 0.6: down by 16 / 250
    ada.accumulate(_logits(8))
    ada.step(4, world_size=2)
    ada.accumulate(_logits(8))
    assert ada.step(4, world_size=2) == 1.0
    assert ada.p == 0.5 - 16 / 250 + 16 / 250


def test_r_t_equal_to_the_target_leaves_p_alone():
    ada = AdaptiveAugment(target=0.5, ada_kimg=0.1, interval=1, p=0.3)
    ada.accumulate(_logits(6))  # (6 - 2) / 8 = 0.5
    assert ada.step(BATCH) == 0.5
    assert ada.p == 0.3


def test_accumulate_detaches_and_takes_any_dtype():
    ada = AdaptiveAugment(interval=1)
    logits = torch.randn(BATCH, 1, requires_grad=True)
    ada.accumulate(logits.bfloat16() * 2)
    assert isinstance(ada.state_dict()["sign_sum"], float)
    expected = logits.detach().sign().sum().item() / BATCH
    assert ada.step(BATCH) == expected


def test_a_run_resumed_mid_interval_ends_with_bit_identical_p(tmp_path):
    stream = torch.Generator().manual_seed(3)
    feed = [torch.randn(BATCH, generator=stream) + 0.85 for _ in range(30)]
    settings = {"ada_kimg": 0.7, "interval": 4, "p": 0.1}

    uninterrupted = AdaptiveAugment(**settings)
    for logits in feed:
        uninterrupted.accumulate(logits)
        uninterrupted.step(BATCH)

    first = AdaptiveAugment(**settings)
    for logits in feed[:14]:  # 14 = 3 * 4 + 2: two steps into an interval
        first.accumulate(logits)
        first.step(BATCH)
    assert first.state_dict()["count"] == 2 * BATCH and first.state_dict()["steps"] == 2
    torch.save({"ada": first.state_dict()}, tmp_path / "checkpoint.pt")
    resumed = AdaptiveAugment(**settings)
    resumed.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["ada"])
    for logits in feed[14:]:
        resumed.accumulate(logits)
        resumed.step(BATCH)

    assert resumed.p == uninterrupted.p
    assert resumed.last_rt == uninterrupted.last_rt is not None
    assert resumed.state_dict() == uninterrupted.state_dict()
    assert 0.0 < resumed.p < 1.0  # it moved both ways, neither clamp hides a difference


def test_a_fresh_state_round_trips_with_no_r_t_yet(tmp_path):
    ada = AdaptiveAugment(p=0.25)
    torch.save(ada.state_dict(), tmp_path / "state.pt")
    restored = AdaptiveAugment()
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.p == 0.25 and restored.last_rt is None
    assert restored.state_dict() == ada.state_dict()


@pytest.mark.parametrize(("setting", "key"), [
    ({"target": 0.0}, "training.ada_target"),
    ({"target": 1.0}, "training.ada_target"),
    ({"target": 1.5}, "training.ada_target"),
    ({"ada_kimg": 0}, "training.ada_kimg"),
    ({"ada_kimg": -5.0}, "training.ada_kimg"),
    ({"ada_kimg": float("inf")}, "training.ada_kimg"),
    ({"interval": 0}, "training.ada_interval"),
    ({"interval": 2.0}, "training.ada_interval"),
    ({"p": 1.2}, "augmentation probability p"),
    ({"p": -0.1}, "augmentation probability p"),
])
def test_bad_settings_name_their_key(setting, key):
    with pytest.raises(ValueError, match=key):
        AdaptiveAugment(**setting)


def test_the_reduce_hook_sees_sum_and_count_at_each_adjustment():
    calls = []

    def doubling(pair: torch.Tensor) -> torch.Tensor:  # as if two ranks had the same logits
        calls.append(pair.tolist())
        return pair * 2

    plain, reduced = AdaptiveAugment(ada_kimg=0.1, interval=2), AdaptiveAugment(ada_kimg=0.1,
                                                                                  interval=2)
    for step in range(1, 7):
        for ada, reduce in ((plain, None), (reduced, doubling)):
            ada.accumulate(_logits(step % 8))
            r_t = ada.step(BATCH) if reduce is None else ada.step(BATCH, reduce=reduce)
        assert reduced.last_rt == plain.last_rt
    # Sums of signs of steps (1, 2), (3, 4), (5, 6): 2k - 8 each, over 16 logits.
    assert calls == [[-10.0, 16.0], [-2.0, 16.0], [6.0, 16.0]]
    assert r_t == plain.last_rt and reduced.p == plain.p


def test_the_reduce_hook_is_called_with_nothing_accumulated_and_p_stays():
    calls = []
    ada = AdaptiveAugment(interval=1, p=0.4)
    assert ada.step(BATCH, reduce=lambda pair: calls.append(pair) or pair) is None
    assert len(calls) == 1 and calls[0].tolist() == [0.0, 0.0]
    assert ada.p == 0.4 and ada.last_rt is None


def test_step_rejects_bad_batch_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        AdaptiveAugment().step(0)
    with pytest.raises(ValueError, match="world_size"):
        AdaptiveAugment().step(8, world_size=0)
