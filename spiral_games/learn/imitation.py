"""The imitation baseline's data: which turns of the expert's games are trained on (samples of
advantage 1, for the NLL loss), and each step's batch of them. Pure: standard library only."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Mapping, Sequence

from spiral_games.config.choices import KeepTurns
from spiral_games.types import Episode, Sample


def kept_roles(episode: Episode, keep: KeepTurns, draws: bool) -> tuple[int, ...]:
    """The expert's seats of `episode` (its `trained_roles`) whose turns are imitated: every one
    (`all`), or those that won, and with `draws` those that drew (`winner`)."""
    if keep == KeepTurns.all:
        return episode.trained_roles
    kept = []
    for role in episode.trained_roles:
        mine, theirs = episode.returns[role], episode.returns[1 - role]
        if mine > theirs or (draws and mine == theirs):
            kept.append(role)
    return tuple(kept)


def imitation_samples(
    episodes: Iterable[Episode], keep: Mapping[str, KeepTurns], draws: bool
) -> list[Sample]:
    """One sample per valid, rendered turn of each kept seat (`kept_roles`, by each game's
    `keep`), in episode and turn order, with advantage 1 (the `sft` loss ignores it)."""
    samples = []
    for episode in episodes:
        for role in kept_roles(episode, keep[episode.game], draws):
            for turn in episode.turns:
                if turn.role != role or not turn.valid or not turn.response_ids:
                    continue
                samples.append(
                    Sample(
                        turn.prompt_ids,
                        turn.response_ids,
                        turn.logprobs,
                        1.0,
                        episode.game,
                        role,
                        turn.version,
                        turn.choice_ids,
                    )
                )
    return samples


def demonstration_batch(samples: Sequence[Sample], step: int, size: int, seed: int) -> list[Sample]:
    """The `size` samples of step `step` (0-based): the demonstrations are read in passes, each
    pass in its own order (a shuffle seeded by `seed` and the pass), so every sample is trained
    on once per pass. Each is labelled with `step` as its version (it lags no weights)."""
    if not samples:
        raise ValueError("no demonstrations to train on")
    n, first = len(samples), step * size
    orders: dict[int, list[int]] = {}
    batch = []
    for position in range(first, first + size):
        epoch, index = divmod(position, n)
        if epoch not in orders:
            orders[epoch] = list(range(n))
            random.Random(seed * 1_000_003 + epoch).shuffle(orders[epoch])
        batch.append(dataclasses.replace(samples[orders[epoch][index]], version=step))
    return batch
