"""The uniform magnet of masked choices (learner.magnet_coef): the exact KL, its two code
paths, and an update that pulls a choice toward uniform."""

from __future__ import annotations

import math

import pytest
import torch

from spiral_games.learn.learner import Learner
from spiral_games.logprobs import (
    kl_to_uniform,
    pack_sequences,
    response_logprobs,
    shared_choice_logprobs_and_magnet,
    token_logprobs_and_magnet,
)
from spiral_games.types import Sample, TrainBatch

from ..tiny_run import tiny_config
from .test_learner import spec

pytestmark = pytest.mark.slow  # a DeepSpeed learner


def test_kl_to_uniform_by_hand():
    assert kl_to_uniform(torch.log(torch.tensor([0.5, 0.5]))).item() == pytest.approx(0.0)
    p = torch.tensor([0.7, 0.2, 0.1])
    by_hand = sum(q * math.log(q / (1 / 3)) for q in p.tolist())
    assert kl_to_uniform(torch.log(p)).item() == pytest.approx(by_hand)


def test_both_choice_paths_give_the_same_magnet_and_gradient(tiny):
    learner = Learner(spec(tiny, "learner.bf16=false"))
    model, pad = learner.model, learner.pad_id
    prompts = [(1, 2, 3, 9, 17), (5, 6, 7, 8, 9, 10, 11)]
    choices = [(4350, 7177), (30, 31, 32)]
    picks = [(0, 4350), (1, 32), (0, 7177)]
    _, shared = shared_choice_logprobs_and_magnet(model, prompts, choices, picks, pad, 2.0)
    (grad_shared,) = torch.autograd.grad(shared.sum(), [model.lm_head.weight])
    rows = [(prompts[r], (t,), choices[r]) for r, t in picks]
    ids, attention, mask = pack_sequences([p for p, _, _ in rows], [t for _, t, _ in rows], pad)
    _, full = token_logprobs_and_magnet(model, ids, attention, mask, [c for *_, c in rows], 2.0)
    each = full[mask.bool()]
    (grad_each,) = torch.autograd.grad(each.sum(), [model.lm_head.weight])
    assert shared.tolist() == pytest.approx(each.tolist(), abs=1e-5)
    assert torch.allclose(grad_shared, grad_each, atol=1e-5)
    assert full[~mask.bool()].abs().sum() == 0  # only where a choice is made
    # and the value is the KL to uniform of the distribution the choice is stated to have
    stated = [
        math.exp(response_logprobs(model, [prompts[1]], [(t,)], pad, [choices[1]], 2.0)[0][0])
        for t in choices[1]
    ]
    by_hand = sum(q * math.log(q * len(stated)) for q in stated)
    assert shared[1].item() == pytest.approx(by_hand, abs=1e-5)


PROMPT, CHOICES = (1, 2, 3, 9, 17), (4350, 7177)


def choice_learner(tiny, *overrides: str) -> Learner:
    """A learner of masked choices at temperature 1, on minibatches of 4 samples."""
    return Learner(
        spec(
            tiny,
            "learner.bf16=false",
            "learner.minibatch_size=4",
            "learner.lr=1e-4",  # Adam moves every weight by about lr: small, not past uniform
            "model.action_format=choice",
            "rollout.temperature=1.0",
            *overrides,
        )
    )


def choice_logprobs(learner: Learner) -> list[float]:
    """The learner's log-prob of each of CHOICES after PROMPT, at temperature 1."""
    pad = learner.pad_id
    return [
        response_logprobs(learner.model, [PROMPT], [(t,)], pad, [CHOICES], 1.0)[0][0]
        for t in CHOICES
    ]


def update_without_advantage(learner: Learner, step: int) -> dict[str, float]:
    """One update on 4 copies of the first choice, with advantage 0: only a magnet moves it."""
    old = choice_logprobs(learner)[0]
    sample = Sample(PROMPT, (CHOICES[0],), (old,), 0.0, "kuhn", 0, 0, CHOICES)
    return learner.update(TrainBatch((sample,) * 4, step=step))


@pytest.mark.parametrize("micro", ["1", "4"])  # per-sample rows, and shared forward passes
def test_with_no_advantage_the_magnet_moves_a_choice_toward_uniform(tiny, micro):
    learner = choice_learner(tiny, f"learner.micro_batch_size={micro}", "learner.magnet_coef=1.0")
    before = choice_logprobs(learner)
    metrics = update_without_advantage(learner, step=0)
    after = choice_logprobs(learner)
    assert metrics["train/kl_to_magnet"] > 0
    # |log p(call) - log p(fold)|: 0 at uniform
    assert abs(after[0] - after[1]) < abs(before[0] - before[1])


def test_a_magnet_without_a_masked_choice_says_at_start_that_it_does_nothing():
    from spiral_games.config.schema import format_lines

    free = tiny_config("learner.magnet_coef=0.1", "model.action_format=boxed", rollout=False)
    assert any("magnet_coef=0.1: no effect" in line for line in format_lines(free))
    choice = tiny_config("learner.magnet_coef=0.1", "model.action_format=choice", rollout=False)
    assert not any("magnet_coef" in line for line in format_lines(choice))


def test_the_magnet_schedule_is_a_line_from_start_to_final():
    from spiral_games.config.schema import LearnerConfig

    fixed = LearnerConfig(magnet_coef=0.3)
    assert [fixed.magnet_at(s, 30) for s in (0, 15, 29)] == [0.3, 0.3, 0.3]
    line = LearnerConfig(magnet_coef=0.3, magnet_coef_final=0.05)
    assert line.magnet_at(0, 30) == pytest.approx(0.3)
    assert line.magnet_at(29, 30) == pytest.approx(0.05)
    assert line.magnet_at(10, 21) == pytest.approx(0.175)  # halfway
    assert line.magnet_at(99, 30) == pytest.approx(0.05)  # past the end: stays at the final
    assert line.magnet_at(0, 1) == pytest.approx(0.3)  # one step: the start


def test_a_magnet_schedule_needs_a_start_and_no_negative_end():
    from spiral_games.errors import ConfigError

    with pytest.raises(ConfigError, match=r"learner\.magnet_coef to the starting weight"):
        tiny_config("learner.magnet_coef_final=0.1", rollout=False)
    with pytest.raises(ConfigError, match=r"learner\.magnet_coef_final"):
        tiny_config("learner.magnet_coef=0.3", "learner.magnet_coef_final=-0.1", rollout=False)


def test_the_update_uses_the_scheduled_magnet_of_its_step(tiny):
    """magnet 1 -> 0 over 3 steps, no advantage: an update at the last step (magnet 0, no
    gradient at all, fresh Adam moments) leaves the weights exactly as they were; one at the
    first step pulls the choice toward uniform."""
    learner = choice_learner(
        tiny,
        "learner.micro_batch_size=4",
        "learner.magnet_coef=1.0",
        "learner.magnet_coef_final=0.0",
        "train.steps=3",
    )
    before = choice_logprobs(learner)
    last = update_without_advantage(learner, step=2)
    assert last["train/magnet_coef"] == pytest.approx(0.0)
    assert choice_logprobs(learner) == pytest.approx(before, abs=1e-7)
    first = update_without_advantage(learner, step=0)
    after = choice_logprobs(learner)
    assert first["train/magnet_coef"] == pytest.approx(1.0)
    assert abs(after[0] - after[1]) < abs(before[0] - before[1])
