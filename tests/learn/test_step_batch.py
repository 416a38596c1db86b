"""A step's batch filled round by round: stale games are kept for the record but never trained on
and never move a baseline; the rest get hand-computed RAE advantages in episode order."""

from __future__ import annotations

import dataclasses

from spiral_games.learn.advantage import RoleBaselines
from spiral_games.learn.step_batch import StepBatch
from spiral_games.types import Episode

from .test_staleness import episode, turn


def game(version: int, returns: tuple[float, float], seed: int) -> Episode:
    """Self-play Kuhn: one turn per role, both on weights `version`."""
    played = episode(turn(0, version), turn(1, version), seed=seed)
    return dataclasses.replace(played, returns=returns)


def test_rounds_keep_every_game_train_the_fresh_and_leave_baselines_to_the_fresh():
    baselines = RoleBaselines(decay=0.5)
    batch = StepBatch(step=5, bound=1, baselines=baselines, gamma=1.0, drop_zero=False)
    fresh, stale, later = game(5, (1.0, -1.0), 0), game(3, (1.0, -1.0), 1), game(4, (-1.0, 1.0), 2)
    batch.add([fresh, stale])
    # A = R - b with b read before its update (b starts at 0); the stale game moves nothing
    assert [(s.role, s.advantage) for s in batch.samples] == [(0, 1.0), (1, -1.0)]
    assert baselines.values == {("kuhn", 0): 0.5, ("kuhn", 1): -0.5}
    batch.add([later])  # one version behind: within the bound
    assert [s.advantage for s in batch.samples[2:]] == [-1.0 - 0.5, 1.0 + 0.5]
    assert baselines.values == {("kuhn", 0): -0.25, ("kuhn", 1): 0.25}
    assert batch.episodes == [fresh, stale, later]
    assert batch.dropped == [stale]


def test_without_rae_the_advantage_is_the_return_and_zeros_can_be_dropped():
    batch = StepBatch(step=0, bound=0, baselines=None, gamma=1.0, drop_zero=True)
    batch.add([game(0, (0.0, 0.0), 0), game(0, (1.0, -1.0), 1)])
    assert [(s.role, s.advantage) for s in batch.samples] == [(0, 1.0), (1, -1.0)]
    assert len(batch.episodes) == 2 and batch.dropped == []
