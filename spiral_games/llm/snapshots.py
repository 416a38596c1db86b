"""Past checkpoints as opponents: one extra engine in a rollout worker, whose weights switch to
the snapshot a group of league games needs (`rollout.opponents=league`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from spiral_games.llm.engines.base import Engine
from spiral_games.llm.policy import LLMPolicy


class SnapshotPlayer:
    """Plays any league snapshot with one engine, built on first use (`build`) and reloaded
    from the snapshot's safetensors file when another snapshot is asked for.

    `make_policy(engine)` wraps the engine in the policy the snapshot plays with (the training
    sampling, prompts and parsing of the current policy)."""

    def __init__(
        self, build: Callable[[], Engine], make_policy: Callable[[Engine], LLMPolicy]
    ) -> None:
        self._build = build
        self._make_policy = make_policy
        self.engine: Engine | None = None
        self.policy_: LLMPolicy | None = None
        self.loaded = ""  # the snapshot the engine serves now

    def policy(self) -> LLMPolicy:
        """The policy every snapshot plays through (its engine started on first use)."""
        if self.engine is None or self.policy_ is None:
            self.engine = self._build()
            self.policy_ = self._make_policy(self.engine)
        return self.policy_

    def load(self, name: str, weights: Path, step: int, seed: int) -> None:
        """Serve snapshot `name` (weights in `weights`, taken after `step` steps) from now
        on, its sampling reseeded with `seed`."""
        self.policy()
        assert self.engine is not None
        if self.loaded != name:
            self.engine.load_weights(weights, step)
            self.loaded = name
        self.engine.reseed(seed)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine, self.policy_, self.loaded = None, None, ""
