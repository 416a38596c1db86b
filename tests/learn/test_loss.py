"""The policy-gradient loss with hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from spiral_games.config.choices import PolicyLoss
from spiral_games.learn.loss import policy_loss

PPO = {"mode": PolicyLoss.ppo, "clip": 0.2}  # the hand-computed values below use a 0.2 clip
REINFORCE = {"mode": PolicyLoss.reinforce, "clip": 0.2}  # REINFORCE ignores the clip


def test_ppo_equals_reinforce_gradient_at_ratio_one():
    lp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    out = policy_loss(lp, lp.detach(), torch.tensor([2.0]), torch.ones(1, 2), normalizer=4, **PPO)
    # ratio 1: loss = -A * sum(1) / (B * normalizer) = -2 * 2 / 4
    assert out.loss.item() == pytest.approx(-1.0)
    out.loss.backward()
    assert lp.grad.tolist() == [[-0.5, -0.5]]  # d/dlp of -A*exp(lp-old)/4
    assert out.clip_fraction == 0.0


def test_clip_engages_only_beyond_the_trust_region_in_the_advantage_direction():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 1.1, 0.5]]))  # ratios 1.5, 1.1, 0.5
    mask = torch.ones(1, 3)
    pos = policy_loss(new, old, torch.tensor([1.0]), mask, normalizer=1, **PPO)
    # A>0: clipped at 1.2 for ratio 1.5; 1.1 inside; ratio 0.5 keeps unclipped (pessimistic)
    assert pos.loss.item() == pytest.approx(-(1.2 + 1.1 + 0.5))
    assert pos.clip_fraction == pytest.approx(1 / 3)
    neg = policy_loss(new, old, torch.tensor([-1.0]), mask, normalizer=1, **PPO)
    # A<0: ratio 0.5 is clipped to 0.8; ratio 1.5 stays 1.5
    assert neg.loss.item() == pytest.approx(1.5 + 1.1 + 0.8)
    assert neg.clip_fraction == pytest.approx(1 / 3)


def test_normaliser_is_a_constant_not_the_response_length():
    old = torch.zeros(2, 4)
    lp = torch.zeros(2, 4)
    mask = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 1, 1]])
    out = policy_loss(lp, old, torch.tensor([1.0, 1.0]), mask, normalizer=8, **REINFORCE)
    assert out.loss.item() == 0.0  # -A * logprob with logprob 0
    lp = torch.full((2, 4), -1.0)
    out = policy_loss(lp, old, torch.tensor([1.0, 1.0]), mask, normalizer=8, **REINFORCE)
    assert out.loss.item() == pytest.approx((1 + 4) / (2 * 8))  # masked token sum / (B * 8)


def test_kl_to_reference_is_k3_and_nonnegative():
    lp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    out = policy_loss(
        lp,
        lp,
        torch.tensor([0.0]),
        torch.ones(1, 1),
        normalizer=1,
        ref_logprobs=ref,
        kl_coef=0.1,
        **PPO,
    )
    k3 = 0.5 - math.log(0.5) - 1
    assert out.kl_to_ref == pytest.approx(k3)
    assert out.loss.item() == pytest.approx(0.1 * k3)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="ppo"):
        policy_loss(
            torch.zeros(1, 1),
            torch.zeros(1, 1),
            torch.zeros(1),
            torch.ones(1, 1),
            1,
            mode="a2c",
            clip=0.2,
        )


def test_token_weights_scale_each_policy_gradient_term_without_gradient():
    lp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    weights = torch.tensor([[2.0, 0.5]], requires_grad=True)  # as TIS would give, capped at 2
    out = policy_loss(
        lp,
        lp.detach(),
        torch.tensor([1.0]),
        torch.ones(1, 2),
        normalizer=1,
        token_weights=weights,
        **PPO,
    )
    assert out.loss.item() == pytest.approx(-(2.0 + 0.5))  # ratio 1 per token, times its weight
    out.loss.backward()
    assert lp.grad.tolist() == [[-2.0, -0.5]]
    assert weights.grad is None  # the weights are constants of the loss


def test_magnet_term_adds_its_weighted_kl_over_the_normaliser():
    """The magnet term is coef x KL per choice, summed over masked tokens and divided by
    (B x normaliser) like every other term; its gradient flows through the KL."""
    lp = torch.zeros(2, 1)
    kl = torch.tensor([[0.3], [0.1]], requires_grad=True)
    out = policy_loss(
        lp, lp, torch.zeros(2), torch.ones(2, 1), 4, magnet_kl=kl, magnet_coef=0.5, **REINFORCE
    )
    assert out.loss.item() == pytest.approx(0.5 * (0.3 + 0.1) / (2 * 4))
    assert out.kl_to_magnet == pytest.approx(0.2)  # the mean per decision
    out.loss.backward()
    assert kl.grad.tolist() == [[0.0625], [0.0625]]  # 0.5 / (2 * 4)
    off = policy_loss(lp, lp, torch.zeros(2), torch.ones(2, 1), 4, magnet_kl=kl, **REINFORCE)
    assert off.loss.item() == 0.0 and off.kl_to_magnet == 0.0


def test_sft_loss_is_the_mean_nll_per_response_token_whatever_the_advantage():
    # two replies: probabilities 1/2 and 1/4 on a one-token reply, 1/8 then 1 on a two-token one
    # (the third position is padding); NLL = ln 2, then ln 8 + 0, over three tokens
    lp = torch.log(torch.tensor([[0.5, 1.0, 1.0], [0.125, 1.0, 0.9]])).requires_grad_(True)
    mask = torch.tensor([[1.0, 0, 0], [1.0, 1, 0]])
    for advantage in (1.0, -3.0):  # imitation ignores advantages, old log-probs and the clip
        out = policy_loss(
            lp,
            torch.full((2, 3), -7.0),
            torch.tensor([advantage, 0.0]),
            mask,
            normalizer=24,
            mode=PolicyLoss.sft,
            clip=0.2,
        )
        assert out.loss.item() == pytest.approx((math.log(2) + math.log(8)) / 3)
        assert out.clip_fraction == 0.0
    out.loss.backward()
    assert lp.grad.flatten().tolist() == pytest.approx([-1 / 3, 0, 0, -1 / 3, -1 / 3, 0])
