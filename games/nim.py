"""Nim: the worked example of a game that is not in TextArena (docs/adding-a-game.md).

Piles of stones; on your turn take one or more stones from a single pile; whoever takes the
last stone wins. It subclasses `GameEnv` directly and needs nothing under spiral_games/.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import cast

from spiral_games.play.game import GameEnv
from spiral_games.types import Observation, PolicyOutput, StepResult

_MOVE = re.compile(r"^\[take (\d+) from pile (\d+)\]$")


class NimGame(GameEnv):
    """Normal-play Nim; the seed shuffles the starting pile sizes."""

    name = "nim"

    def __init__(self, piles: Sequence[int] = (3, 4, 5)) -> None:
        if not piles or any(p < 1 for p in piles):
            raise ValueError(f"piles must be positive integers, got {list(piles)}")
        self.start = tuple(piles)
        self.piles: list[int] = []
        self.role = 0
        self.winner: int | None = None

    def reset(self, seed: int) -> None:
        self.piles = list(self.start)
        random.Random(seed).shuffle(self.piles)
        self.role, self.winner = 0, None

    @property
    def current_role(self) -> int:
        return self.role

    def observation(self, role: int) -> str:
        piles = ", ".join(f"pile {i}: {n}" for i, n in enumerate(self.piles))
        return (
            f"You are Player {role} in Nim. Take one or more stones from one pile; whoever "
            f"takes the last stone wins.\nPiles: {piles}.\n"
            "Answer like '[take 2 from pile 1]'."
        )

    def legal_actions(self, role: int) -> list[str]:
        return [
            f"[take {k} from pile {i}]" for i, n in enumerate(self.piles) for k in range(1, n + 1)
        ]

    def step(self, action: str) -> StepResult:
        match = _MOVE.match(action)
        if not match:
            return StepResult(False, f"{action!r} is not of the form [take N from pile I]")
        take, pile = int(match.group(1)), int(match.group(2))
        if pile >= len(self.piles) or not 1 <= take <= self.piles[pile]:
            return StepResult(False, f"cannot take {take} from pile {pile}")
        self.piles[pile] -= take
        if not any(self.piles):
            self.winner = self.role
        else:
            self.role = 1 - self.role
        return StepResult(True)

    @property
    def done(self) -> bool:
        return self.winner is not None

    def returns(self) -> tuple[float, float]:
        return (1.0, -1.0) if self.winner == 0 else (-1.0, 1.0)

    @property
    def outcome_reason(self) -> str:
        return f"Player {self.winner} took the last stone."

    def policy_state(self, role: int) -> tuple[int, ...]:
        return tuple(self.piles)


class NimExpertPolicy:
    """Moves to a zero nim-sum position when it can (optimal play), else takes one stone."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        """Restart its choices from `seed` (a collect or evaluation replays identically)."""
        self.rng.seed(seed)

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        return [
            PolicyOutput(text=f"\\boxed{{{self._move(cast(tuple[int, ...], obs.state))}}}")
            for obs in observations
        ]

    def _move(self, piles: tuple[int, ...]) -> str:
        nim_sum = 0
        for n in piles:
            nim_sum ^= n
        for i, n in enumerate(piles):
            if nim_sum and n ^ nim_sum < n:
                return f"[take {n - (n ^ nim_sum)} from pile {i}]"
        i = self.rng.choice([i for i, n in enumerate(piles) if n])
        return f"[take 1 from pile {i}]"
