"""Rollout planning: which games, seeds and seats a batch of episodes uses. Pure logic."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from spiral_games.play.league import LeagueDraw
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
    jobs = []
    for _ in range(num_episodes):
        name, game_seed = _next_game(rng, rules, weights)
        other = None if opponents is None else opponents[name]
        jobs.append(_seated(rules[name], game_seed, rng, learner, other, version, opponent_name))
    return jobs


def _next_game(
    rng: random.Random, rules: Mapping[str, GameRules], weights: Mapping[str, float]
) -> tuple[str, int]:
    """A game of `rules` drawn by weight, and a fresh seed for it."""
    names = sorted(rules)
    name = rng.choices(names, weights=[weights[n] for n in names])[0]
    return name, rng.randrange(2**31)


def _seated(
    rules: GameRules,
    game_seed: int,
    rng: random.Random,
    learner: Policy,
    other: Policy | None,
    version: int,
    opponent: str,
) -> GameJob:
    """Self-play (`other` None: both seats trained), or `other` in a random seat and only the
    learner's seat trained."""
    if other is None:
        return GameJob(rules, game_seed, (learner, learner), (0, 1), version)
    seat = rng.randrange(2)
    seats = (learner, other) if seat == 0 else (other, learner)
    return GameJob(rules, game_seed, seats, (seat,), version, opponent)


def evaluation_jobs(
    rules: Mapping[str, GameRules],
    opponents: Mapping[tuple[str, str], Policy],
    games: int | Mapping[str, int],
    seed: int,
    learner: Policy,
    version: int = 0,
    first_seat: int | None = 0,
) -> list[GameJob]:
    """`games` games per (game, opponent), or per opponent name where `games` maps names to
    counts (a name it leaves out gets none); the learner's seat alternates from `first_seat`,
    or is drawn at random for each game (`first_seat` None)."""
    rng = random.Random(seed)
    jobs = []
    for (game, name), opponent in sorted(opponents.items(), key=lambda kv: kv[0]):
        count = games if isinstance(games, int) else games.get(name, 0)
        for k in range(count):
            game_seed = rng.randrange(2**31)
            seat = rng.randrange(2) if first_seat is None else (first_seat + k) % 2
            seats = (learner, opponent) if seat == 0 else (opponent, learner)
            jobs.append(GameJob(rules[game], game_seed, seats, (seat,), version, name))
    return jobs


@dataclass(frozen=True)
class EvalShare:
    """One worker's part of an evaluation: its games per opponent name, its seed, and the seat
    its model takes first (seats alternate from there)."""

    position: int  # the k-th live worker
    games: dict[str, int]
    seed: int
    first_seat: int


def evaluation_shares(games: Mapping[str, int], workers: int, seed: int) -> list[EvalShare]:
    """`games[name]` split over `workers` evenly; worker k plays from `seed + k`, starting in
    seat k % 2, so odd shares still balance. Workers with nothing to play get no share."""
    split = {name: split_evenly(count, workers) for name, count in games.items()}
    shares = []
    for k in range(workers):
        counts = {name: parts[k] for name, parts in split.items()}
        if any(counts.values()):
            shares.append(EvalShare(k, counts, seed + k, k % 2))
    return shares


def split_evenly(count: int, parts: int) -> list[int]:
    """`count` split into `parts` shares that differ by at most one (larger shares first)."""
    return [count // parts + (k < count % parts) for k in range(parts)]


def plan_league_jobs(
    rules: Mapping[str, GameRules],
    weights: Mapping[str, float],
    num_episodes: int,
    seed: int,
    learner: Policy,
    draw: LeagueDraw,
    opponent: Callable[[str, str], Policy],
    version: int = 0,
) -> list[GameJob]:
    """Like `plan_jobs`, with each game's opponent drawn from the league: self-play (both
    seats trained) or member `m` (`opponent(game, m)`, in a random seat; only the learner's
    seat is trained). Deterministic from `seed`."""
    rng = random.Random(seed)
    jobs = []
    for _ in range(num_episodes):
        name, game_seed = _next_game(rng, rules, weights)
        member = draw.sample(rng)
        other = None if member is None else opponent(name, member)
        jobs.append(_seated(rules[name], game_seed, rng, learner, other, version, member or ""))
    return jobs


def league_groups(jobs: Sequence[GameJob], snapshots: Iterable[str]) -> list[tuple[str, list[int]]]:
    """The order a worker plays league `jobs` in when one engine serves every snapshot in turn:
    (snapshot to load, or "" for none; indices of its jobs). Games against snapshots are grouped
    by snapshot, in name order; the first group also holds every other game (self-play, fixed
    opponents), so it runs alongside them. Depends on the jobs alone, so a resumed run plays
    the same groups."""
    snapshots = set(snapshots)
    members = sorted({job.opponent for job in jobs if job.opponent in snapshots})
    first = members[0] if members else ""
    groups = [
        (
            first,
            [i for i, j in enumerate(jobs) if j.opponent not in snapshots or j.opponent == first],
        )
    ]
    groups += [(m, [i for i, j in enumerate(jobs) if j.opponent == m]) for m in members[1:]]
    return [g for g in groups if g[1]]
