"""RAE with hand-computed numbers."""

from __future__ import annotations

import pytest

from spiral_games.learn.advantage import RoleBaselines, episode_samples
from spiral_games.types import Episode, Turn


def turn(role, n=2):
    return Turn(
        role=role,
        observation="o",
        response="r",
        action="[a]",
        valid=True,
        prompt_ids=(1, 2),
        response_ids=tuple(range(n)),
        logprobs=(-0.5,) * n,
    )


def episode(returns, game="kuhn", turns=(0, 1, 0), trained=(0, 1)):
    return Episode(
        game=game,
        seed=0,
        turns=tuple(turn(r) for r in turns),
        returns=returns,
        reason="",
        trained_roles=trained,
    )


def test_baseline_is_read_before_update_per_game_and_role():
    b = RoleBaselines(decay=0.9)
    samples = episode_samples([episode((1.0, -1.0))], b)
    # first episode: baselines start at 0, so A = R
    assert [s.advantage for s in samples] == [1.0, 1.0, -1.0]
    assert b.values == {("kuhn", 0): pytest.approx(0.1), ("kuhn", 1): pytest.approx(-0.1)}
    samples = episode_samples([episode((1.0, -1.0))], b)
    assert [s.advantage for s in samples] == pytest.approx([0.9, 0.9, -0.9])
    assert b.values[("kuhn", 0)] == pytest.approx(0.9 * 0.1 + 0.1 * 1.0)  # 0.19


def test_games_have_separate_baselines():
    b = RoleBaselines(decay=0.5)
    episode_samples([episode((1.0, -1.0), game="kuhn")], b)
    samples = episode_samples([episode((1.0, -1.0), game="tictactoe")], b)
    assert samples[0].advantage == 1.0  # untouched by kuhn's baseline
    assert b.values[("kuhn", 0)] == 0.5 and b.values[("tictactoe", 0)] == 0.5


def test_one_update_per_episode_per_role_not_per_turn():
    b = RoleBaselines(decay=0.5)
    episode_samples([episode((1.0, -1.0), turns=(0, 1, 0, 1, 0))], b)
    assert b.values[("kuhn", 0)] == 0.5  # not 0.875 as three per-turn updates would give


def test_discount_counts_remaining_turns_of_the_same_role():
    samples = episode_samples([episode((2.0, -2.0), turns=(0, 1, 0, 1, 0))], None, gamma=0.5)
    assert [s.advantage for s in samples if s.role == 0] == [0.5, 1.0, 2.0]
    assert [s.advantage for s in samples if s.role == 1] == [-1.0, -2.0]


def test_each_game_takes_its_own_discount():
    played = [
        episode((2.0, -2.0), game="tictactoe", turns=(0, 1, 0)),
        episode((2.0, -2.0), game="kuhn", turns=(0, 1, 0)),
    ]
    samples = episode_samples(played, None, gamma={"tictactoe": 0.5})
    ttt = [s.advantage for s in samples if s.game == "tictactoe"]
    kuhn = [s.advantage for s in samples if s.game == "kuhn"]
    assert ttt == [1.0, 2.0, -2.0] and kuhn == [2.0, 2.0, -2.0]  # kuhn left out: 1


def test_only_trained_roles_and_optional_zero_drop():
    b = RoleBaselines(decay=0.95)
    samples = episode_samples([episode((0.0, 0.0), trained=(1,))], b, drop_zero=True)
    assert samples == [] and ("kuhn", 0) not in b.values and b.values[("kuhn", 1)] == 0.0
    samples = episode_samples([episode((1.0, -1.0), trained=(1,))], b)
    assert {s.role for s in samples} == {1}


def test_without_rae_the_advantage_is_the_return():
    samples = episode_samples([episode((1.0, -1.0)), episode((1.0, -1.0))], None)
    assert [s.advantage for s in samples] == [1.0, 1.0, -1.0] * 2


def test_state_round_trips_through_json_types():
    import json

    b = RoleBaselines(decay=0.8)
    episode_samples([episode((1.0, -1.0)), episode((-1.5, 0.5), game="tictactoe")], b)
    again = RoleBaselines.from_state_dict(json.loads(json.dumps(b.state_dict())))
    assert again == b
