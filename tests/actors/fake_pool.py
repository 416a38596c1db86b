"""A stand-in for `RolloutPool` in the collection tests: it records every collect and answers
with games of one trained turn each, optionally holding them until a test releases them."""

from __future__ import annotations

import threading

from spiral_games.types import Episode, Turn


class FakePool:
    def __init__(self, sync=None, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[int, int, object]] = []  # (num_episodes, seed, draw)
        self.deferred: list[bool] = []  # sync.defer_catch_up during each collect
        self.sync, self.gate = sync, gate
        self.closing = False

    def collect(self, num_episodes: int, seed: int, draw=None) -> list[Episode]:
        self.calls.append((num_episodes, seed, draw))
        if self.sync is not None:
            self.deferred.append(self.sync.defer_catch_up)
        if self.gate is not None:
            self.gate.wait(timeout=30)
        turn = Turn(0, "o", "r", "[a]", True, prompt_ids=(1,), response_ids=(2,), logprobs=(-1.0,))
        return [
            Episode("kuhn", seed + i, (turn,), (1.0, -1.0), "end", trained_roles=(0,))
            for i in range(num_episodes)
        ]
