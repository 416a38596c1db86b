"""Rollout planning: which games, seeds and seats a batch of episodes uses. Pure logic."""

from __future__ import annotations

import random
from collections.abc import Mapping

from spiral_games.play.loop import GameJob, GameRules
from spiral_games.play.policy import Policy


def plan_jobs(
    rules: Mapping[str, GameRules],
    weights: Mapping[str, float],
    num_episodes: int,
    seed: int,
    learner: Policy,
    opponents: Mapping[str, Policy] | None = None,
    version: int = 0,
    opponent_name: str = "",
) -> list[GameJob]:
    """Sample `num_episodes` games by weight with fresh seeds, deterministically from `seed`.

    Self-play (`opponents` None) seats `learner` in both roles and trains both. Otherwise the
    game's opponent takes a random seat per game and only the learner's seat is trained.
    """
    rng = random.Random(seed)
    names = sorted(rules)
    jobs = []
    for _ in range(num_episodes):
        name = rng.choices(names, weights=[weights[n] for n in names])[0]
        game_seed = rng.randrange(2**31)
        if opponents is None:
            seats: tuple[Policy, Policy] = (learner, learner)
            trained: tuple[int, ...] = (0, 1)
        else:
            seat = rng.randrange(2)
            seats = (learner, opponents[name]) if seat == 0 else (opponents[name], learner)
            trained = (seat,)
        jobs.append(GameJob(rules[name], game_seed, seats, trained, version, opponent_name))
    return jobs


def evaluation_jobs(
    rules: Mapping[str, GameRules],
    opponents: Mapping[tuple[str, str], Policy],
    games: int | Mapping[str, int],
    seed: int,
    learner: Policy,
    version: int = 0,
    first_seat: int = 0,
) -> list[GameJob]:
    """`games` games per (game, opponent), or per opponent name where `games` maps names to
    counts (a name it leaves out gets none); the learner's seat alternates from `first_seat`."""
    rng = random.Random(seed)
    jobs = []
    for (game, name), opponent in sorted(opponents.items(), key=lambda kv: kv[0]):
        count = games if isinstance(games, int) else games.get(name, 0)
        for k in range(count):
            seat = (first_seat + k) % 2
            seats = (learner, opponent) if seat == 0 else (opponent, learner)
            jobs.append(GameJob(rules[game], rng.randrange(2**31), seats, (seat,), version, name))
    return jobs
