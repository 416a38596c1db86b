"""What the rollout engines do while the learner updates, and so when they need new weights:
stay awake (the default) or sleep to free the accelerator for a collocated learner
(`rollout.sleep_when_training`, SPIRAL's collocated mode)."""

from __future__ import annotations

from typing import Protocol

from spiral_games.actors.rollout_pool import RolloutPool


class EngineRest(Protocol):
    """Called by the loop around every update: `rest` just before it, `push_due` just after."""

    def rest(self) -> None:
        """The learner is about to update."""
        ...

    def push_due(self, done: int) -> bool:
        """Whether the weights after `done` steps are pushed to the workers now."""
        ...


class AwakeEngines:
    """The engines keep their memory during an update and serve the weights they hold, so a
    push is needed only every `push_every` steps (`train.push_every`)."""

    def __init__(self, push_every: int) -> None:
        self.push_every = push_every

    def rest(self) -> None:
        """Nothing to free."""

    def push_due(self, done: int) -> bool:
        return done % self.push_every == 0


class SleepingEngines:
    """The engines free their accelerator memory for each update (vLLM sleep mode; a no-op on
    a CPU), and a sleeping engine's weights are gone: it wakes with a push after every update,
    whatever `train.push_every` says."""

    def __init__(self, pool: RolloutPool) -> None:
        self.pool = pool

    def rest(self) -> None:
        self.pool.sleep()

    def push_due(self, done: int) -> bool:
        return True
