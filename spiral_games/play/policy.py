"""The batched `Policy` interface and the game-agnostic random opponent."""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from fractions import Fraction
from typing import Any, Protocol, TypeGuard

from spiral_games.errors import GameError
from spiral_games.types import Observation, PolicyOutput


class Policy(Protocol):
    """Anything that answers a batch of observations with one output each."""

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]: ...


class StreamingPolicy(Protocol):
    """A policy answered one observation at a time: `submit` starts an answer and returns its
    ticket, `poll` waits until at least one of the given tickets is answered and returns every
    answered one, `abort` drops tickets. `streaming` says whether the game loop should use
    these rather than `act`."""

    @property
    def streaming(self) -> bool: ...

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]: ...

    def submit(self, observation: Observation) -> str: ...

    def poll(self, tickets: Collection[str]) -> dict[str, PolicyOutput]: ...

    def abort(self, tickets: Collection[str]) -> None:
        """Give up on `tickets` (the game loop failed): no answer to them is kept."""
        ...


class ScoringPolicy(Protocol):
    """A policy that can state its action probabilities: for each observation, the probability
    of each of its legal actions (what they leave of 1 is the chance of an invalid reply).
    Analyses use them, where a policy has them, instead of sampling its replies."""

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]: ...

    def action_probabilities(self, observations: Sequence[Observation]) -> list[dict[str, Any]]: ...


def scores_actions(policy: Policy, game: str) -> TypeGuard[ScoringPolicy]:
    """Whether `policy` states its action probabilities (`ScoringPolicy`) in `game`: a policy
    that does so in some games only says which through a `scores_game(game)` method."""
    if not callable(getattr(policy, "action_probabilities", None)):
        return False
    scores_game = getattr(policy, "scores_game", None)
    return not callable(scores_game) or bool(scores_game(game))


def reseed_policy(policy: Policy, seed: int) -> None:
    """Restart `policy`'s sampling from `seed` where it has a `reseed` method (the scripted
    opponents and LLM policies do), so that a collect or an evaluation plays the same games
    whenever it runs: after a resume, or again on a restarted worker."""
    reseed = getattr(policy, "reseed", None)
    if callable(reseed):
        reseed(seed)


def reseed_policies(policies: Mapping[Any, Policy], seed: int) -> None:
    """`reseed_policy` on each of `policies`, in key order, from `seed + 1`, `seed + 2`, ..."""
    for k, key in enumerate(sorted(policies)):
        reseed_policy(policies[key], seed + 1 + k)


class RandomPolicy:
    """Uniform over the legal actions the game lists, answered in the \\boxed{} format."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        """Restart its choices from `seed` (a collect or evaluation replays identically)."""
        self.rng.seed(seed)

    def action_probabilities(self, observations: Sequence[Observation]) -> list[dict[str, Any]]:
        """Uniform over each observation's legal actions, as exact Fractions."""
        out = []
        for obs in observations:
            legal = self._legal(obs)
            out.append({a: Fraction(1, len(legal)) for a in legal})
        return out

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        outputs = []
        for obs in observations:
            legal = self._legal(obs)
            outputs.append(PolicyOutput(text=f"\\boxed{{{self.rng.choice(legal)}}}"))
        return outputs

    @staticmethod
    def _legal(obs: Observation) -> tuple[str, ...]:
        if not obs.legal_actions:
            raise GameError(
                f"The random opponent needs legal actions, and game {obs.game!r} lists none "
                "for this state. Implement GameEnv.legal_actions for it."
            )
        return tuple(obs.legal_actions)
