"""Bounded staleness: hand-computed staleness, the keep/drop split, its metrics, and the bound
holding for every sample that reaches the learner."""

from __future__ import annotations

import random
import re

import pytest

from spiral_games.learn.advantage import RoleBaselines, episode_samples
from spiral_games.learn.staleness import split_stale, staleness, staleness_metrics, trained_turns
from spiral_games.types import Episode, Turn


def turn(role: int, version: int, generated: bool = True) -> Turn:
    """A turn played on weights `version`; `generated=False`: a scripted reply (no tokens)."""
    return Turn(
        role=role,
        observation="o",
        response="r",
        action="[a]",
        valid=True,
        prompt_ids=(1, 2),
        response_ids=(3, 4) if generated else (),
        logprobs=(-0.5, -0.5) if generated else (),
        version=version,
    )


def episode(*turns: Turn, trained: tuple[int, ...] = (0, 1), seed: int = 0) -> Episode:
    return Episode(
        game="kuhn",
        seed=seed,
        turns=turns,
        returns=(1.0, -1.0),
        reason="",
        trained_roles=trained,
    )


def test_an_episode_is_as_stale_as_its_oldest_trained_turn():
    ep = episode(turn(0, 6), turn(1, 2), turn(0, 4), turn(0, 1, generated=False), trained=(0,))
    # role 1 is the fixed opponent (v2 ignored); the tokenless v1 turn is no sample
    assert trained_turns(ep) == [ep.turns[0], ep.turns[2]]
    assert staleness(ep, learner_version=7) == 7 - 4
    selfplay = episode(turn(0, 6), turn(1, 2), turn(0, 4))
    assert staleness(selfplay, learner_version=7) == 7 - 2


def test_an_episode_with_no_trained_turn_is_never_stale():
    scripted = episode(turn(0, 0, generated=False), turn(1, 0, generated=False))
    assert staleness(scripted, learner_version=100) == 0
    assert staleness(episode(turn(1, 0), trained=(0,)), learner_version=100) == 0


def test_split_keeps_episodes_at_most_bound_behind_in_order():
    eps = [episode(turn(0, v), seed=i) for i, v in enumerate([5, 3, 4, 2, 5, 3])]
    kept, dropped = split_stale(eps, learner_version=5, bound=2)
    assert [e.seed for e in kept] == [0, 1, 2, 4, 5]  # staleness 0, 2, 1, 0, 2: 2 is kept
    assert [e.seed for e in dropped] == [3]  # staleness 3
    none_kept, all_dropped = split_stale(eps, learner_version=5, bound=-1)
    assert none_kept == [] and all_dropped == eps
    all_kept, _ = split_stale(iter(eps), learner_version=5, bound=3)  # any iterable
    assert all_kept == eps


def test_metrics_count_trained_turns_per_staleness_and_what_was_dropped():
    a = episode(turn(0, 5), turn(1, 4), turn(1, 4, generated=False))  # staleness 1, 2
    b = episode(turn(0, 6), turn(1, 6), turn(0, 3))  # staleness 0, 0, 3
    c = episode(turn(0, 0), turn(1, 6), trained=(1,))  # role 0 untrained: staleness 0
    assert staleness_metrics([a, b, c], dropped=[b], learner_version=6) == {
        "rollout/staleness_0": 3.0,
        "rollout/staleness_1": 1.0,
        "rollout/staleness_2": 1.0,
        "rollout/staleness_3": 1.0,
        "rollout/staleness_mean": pytest.approx((0 * 3 + 1 + 2 + 3) / 6),
        "rollout/dropped_samples": 3.0,
        "rollout/dropped_episodes": 1.0,
    }


def test_metrics_without_samples_have_a_zero_mean_and_no_histogram():
    scripted = episode(turn(0, 0, generated=False))
    assert staleness_metrics([scripted], [], learner_version=3) == {
        "rollout/staleness_mean": 0.0,
        "rollout/dropped_samples": 0.0,
        "rollout/dropped_episodes": 0.0,
    }


def test_each_sample_carries_the_version_of_its_own_turn():
    ep = episode(turn(0, 7), turn(1, 8), turn(0, 9), turn(1, 8, generated=False))
    samples = episode_samples([ep], RoleBaselines(decay=0.95))
    assert [(s.role, s.version) for s in samples] == [(0, 7), (0, 9), (1, 8)]
    assert [t["version"] for t in ep.to_json()["turns"]] == [7, 8, 9, 8]


def random_episode(rng: random.Random, learner_version: int, seed: int) -> Episode:
    turns = tuple(
        turn(rng.randrange(2), rng.randint(0, learner_version), generated=rng.random() < 0.8)
        for _ in range(rng.randint(0, 6))
    )
    trained = rng.choice([(0, 1), (0,), (1,)])
    return episode(*turns, trained=trained, seed=seed)


def test_no_sample_older_than_the_bound_reaches_the_learner():
    for seed in range(300):
        rng = random.Random(seed)
        learner_version, bound = rng.randint(0, 8), rng.randint(0, 4)
        eps = [random_episode(rng, learner_version, i) for i in range(rng.randint(0, 12))]
        kept, dropped = split_stale(eps, learner_version, bound)
        samples = episode_samples(kept, RoleBaselines(decay=0.95), gamma=rng.choice([1.0, 0.9]))
        assert all(learner_version - s.version <= bound for s in samples), seed
        # each dropped episode had a sample past the bound; together they partition, in order
        assert all(
            any(learner_version - t.version > bound for t in trained_turns(e)) for e in dropped
        ), seed
        assert sorted([*kept, *dropped], key=lambda e: e.seed) == eps, seed
        assert [e.seed for e in kept] == sorted(e.seed for e in kept), seed
        assert [e.seed for e in dropped] == sorted(e.seed for e in dropped), seed
        metrics = staleness_metrics(eps, dropped, learner_version)
        histogram = sum(v for k, v in metrics.items() if re.fullmatch(r"rollout/staleness_\d+", k))
        assert histogram == sum(len(trained_turns(e)) for e in eps), seed
        assert len(samples) == histogram - metrics["rollout/dropped_samples"], seed
        assert metrics["rollout/dropped_episodes"] == len(dropped), seed
