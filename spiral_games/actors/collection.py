"""How the driver collects a step's games: the `Collector` the training loop calls the same way
every step, and the plain one that plays each round when asked (`actors.overlap` has the one
that plays the next step's batch during the update, `train.max_staleness > 0`)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.play.league import LeagueDraw
from spiral_games.types import Episode

Draw = Callable[[], LeagueDraw | None]  # the opponents of the next collection (None: no league)


class Collector(Protocol):
    """What the loop asks of collection, in this order each step: rounds of games until the
    batch is full, the next batch started (or not), a wait before the push, metrics."""

    def collect(self) -> list[Episode]:
        """One round of games for this step."""
        ...

    def play_ahead(self, done: int) -> None:
        """The learner is about to update after `done` steps: start the next batch now, or not."""
        ...

    def wait(self) -> None:
        """Return once no game is being played, so every worker is idle for the push."""
        ...

    def metrics(self) -> dict[str, float]:
        """This step's collection metrics beyond `rollout/*` (none for the plain collector)."""
        ...

    def close(self) -> bool:
        """Stop; returns whether games were still being played (the pool then does not wait
        for its busy workers)."""
        ...


class StepCollector:
    """Plays each round when the loop asks for it, so every game of a step is played by the
    weights pushed before it (the synchronous loop, `train.max_staleness=0`)."""

    def __init__(
        self, pool: RolloutPool, episodes_per_round: int, rng: random.Random, draw: Draw
    ) -> None:
        """`rng`: the driver's collection RNG (one seed per round; a resume restores it);
        `draw`: called once per round, after the last round's games were rated."""
        self.pool, self.episodes_per_round, self.rng, self.draw = (
            pool,
            episodes_per_round,
            rng,
            draw,
        )

    def collect(self) -> list[Episode]:
        """`episodes_per_round` new games, seeded from the driver's RNG."""
        return self.pool.collect(self.episodes_per_round, self.rng.randrange(2**31), self.draw())

    def play_ahead(self, done: int) -> None:
        """Nothing is played during the update."""

    def wait(self) -> None:
        """Nothing is in flight between two `collect` calls."""

    def metrics(self) -> dict[str, float]:
        return {}

    def close(self) -> bool:
        return False
