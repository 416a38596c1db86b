"""The agreement comparison: both gaps computed by hand, the tolerance picked by precision."""

from __future__ import annotations

import pytest

from spiral_games.config.schema import RolloutConfig
from spiral_games.llm.agreement import compare, tolerance
from spiral_games.types import Generation


def generation(logprobs):
    n = len(logprobs)
    return Generation((1, 2), tuple(range(10, 10 + n)), tuple(logprobs), "text", False)


def test_identical_scores_agree_with_zero_gaps():
    got = compare(generation([-0.1, -2.0]), [-0.1, -2.0], [-0.1, -2.0], "float32", "float32", 0.01)
    assert got.ok and got.choice_gap == 0.0 and got.logprob_gap == 0.0
    assert "agree over 2 greedy tokens" in got.describe()


def test_the_gaps_are_the_largest_per_token_differences():
    # token 2 is not the learner's argmax (top -0.5 vs -2.0): choice gap 1.5;
    # the engine's log-probs differ by 0.05 and 0.3: log-prob gap 0.3
    got = compare(generation([-0.15, -1.7]), [-0.1, -2.0], [-0.1, -0.5], "bfloat16", "float32", 0.5)
    assert got.choice_gap == pytest.approx(1.5) and got.logprob_gap == pytest.approx(0.3)
    assert not got.ok and "DISAGREE" in got.describe()


def test_a_near_tie_within_tolerance_is_agreement():
    got = compare(generation([-0.7]), [-0.7], [-0.6], "bfloat16", "bfloat16", 0.5)
    assert got.ok and got.choice_gap == pytest.approx(0.1)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 generated tokens"):
        compare(generation([-0.1, -0.2]), [-0.1], [-0.1], "float32", "float32", 0.01)


def test_the_tolerance_is_the_reduced_one_when_either_side_is_not_fp32():
    r = RolloutConfig()
    fp32, reduced = r.agreement_tol_fp32, r.agreement_tol_reduced
    assert fp32 < reduced
    assert tolerance("float32", "float32", fp32, reduced) == fp32
    assert tolerance("bfloat16", "float32", fp32, reduced) == reduced
    assert tolerance("float32", "bfloat16", fp32, reduced) == reduced
    assert tolerance("float16", "float32", fp32, reduced) == reduced
