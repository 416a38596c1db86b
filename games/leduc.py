"""Leduc Hold'em as a text game: the env and its `expert`, a CFR+ equilibrium. The betting tree
and exact exploitability live in games/leduc_tree.py, the `eval/leduc/*` measurement of a policy
in games/leduc_analysis.py, the solver that wrote the expert's table in games/leduc_solver.py.

Rules (games/leduc_tree.py): six cards J, J, Q, Q, K, K; ante 1; one private card each; two
betting rounds, player 0 first in both, bets and raises of 2 chips then 4, at most a bet and a
raise per round; a public card between the rounds; a card pairing it wins, else the higher card,
equal ranks split. Moves: [check] [bet] [call] [raise] [fold]. One hand per game.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from functools import cache
from typing import Any, cast

from games.leduc_tree import (
    BET_SIZES,
    INFO_SETS,
    MAX_CHIPS,
    RANKS,
    InfoSet,
    Strategy,
    actor,
    contributions,
    legal_moves,
    settle,
    showdown_winner,
    split_rounds,
)
from spiral_games.errors import GameError
from spiral_games.play.game import GameEnv
from spiral_games.types import Observation, PolicyOutput, StepResult

CHIPS_PER_REWARD = MAX_CHIPS  # reward = chips won / 13: a hand moves at most 13, so in [-1, 1]
_ACTION = re.compile(r"\[\s*(check|bet|call|raise|fold)\s*\]", re.IGNORECASE)
PAST = {"check": "checked", "bet": "bet", "call": "called", "raise": "raised", "fold": "folded"}
RULES = (
    "Rules: the deck has six cards, two each of J < Q < K. Each player antes 1 chip and is dealt "
    "one private card. There are two betting rounds, and Player 0 acts first in both. After "
    "round 1 one public card is revealed. A bet or a raise adds "
    f"{BET_SIZES[0]} chips in round 1 and {BET_SIZES[1]} chips in round 2; each round allows one "
    "bet and one raise. At showdown a card that pairs the public card wins, otherwise the higher "
    "card wins; equal cards split the pot.\n"
    "Actions: '[check]' (pass when no bet is pending), '[bet]' (open the betting), '[call]' "
    "(match the bet), '[raise]' (match the bet and raise it), '[fold]' (give up the pot)."
)


class LeducPokerGame(GameEnv):
    """The `leduc` game: one hand of Leduc Hold'em, rewarded by the chips won / 13 (zero-sum).

    An invalid move is left to the game loop (`games.leduc.invalid_move`): at the default
    penalty of -1.5 it costs 19.5 chips, worse than any legal line (at most 13).
    """

    name = "leduc"
    chips_per_reward = float(CHIPS_PER_REWARD)  # how the exploitability counts a reward in chips

    def __init__(self) -> None:
        self.cards = ("", "")
        self.public = ""
        self.history: list[str] = []

    def reset(self, seed: int) -> None:
        deck = [rank for rank in RANKS for _ in range(2)]
        random.Random(seed).shuffle(deck)
        self.cards, self.public, self.history = (deck[0], deck[1]), deck[2], []

    @property
    def current_role(self) -> int:
        return actor(self.history)

    def _public_seen(self) -> str:
        """The public card once round 1 is over, else ""."""
        return self.public if split_rounds(self.history)[1] is not None else ""

    def _position(self, role: int) -> list[str]:
        """The cards `role` sees, the betting of each round so far and the pot."""
        first, second = split_rounds(self.history)
        lines = [
            f"You are Player {role}; Player 0 acts first in each round. Your card: "
            f"{self.cards[role]}. Public card: {self._public_seen() or 'not revealed yet'}."
        ]
        for number, moves in enumerate((first, second), start=1):
            if moves is not None:
                told = ", ".join(f"Player {k % 2} {PAST[m]}" for k, m in enumerate(moves))
                lines.append(f"Round {number} betting: {told or 'none'}.")
        spent = contributions(self.history)
        lines.append(
            f"Pot: {sum(spent)} chips (you put in {spent[role]}, your opponent {spent[1 - role]})."
        )
        return lines

    def current_state(self, role: int) -> str:
        """One line of rules, then the position (the short prompt lists the legal moves)."""
        rules = (
            "Leduc Hold'em: J < Q < K, two of each, ante 1; bets and raises add "
            f"{BET_SIZES[0]} chips in round 1 and {BET_SIZES[1]} in round 2, at most a bet and a "
            "raise per round; a card pairing the public card wins, else the higher card, equal "
            "cards split."
        )
        return "\n".join([rules, *self._position(role)])

    def observation(self, role: int) -> str:
        """The rules in full, the position and the legal moves."""
        moves = ", ".join(self.legal_actions(role))
        position = "\n".join(self._position(role))
        return (
            f"You are Player {role} in a hand of Leduc Hold'em poker.\n{RULES}\n\n{position}\n"
            f"Your available actions: {moves}"
        )

    def legal_actions(self, role: int) -> list[str]:
        return [f"[{m}]" for m in legal_moves(self.history)]

    def step(self, action: str) -> StepResult:
        found = _ACTION.findall(action)
        move = found[-1].lower() if found else None
        legal = legal_moves(self.history)
        if move not in legal:
            listed = ", ".join(f"[{m}]" for m in legal)
            return StepResult(False, f"'{action[:60]}' is not one of {listed}")
        self.history.append(move)
        return StepResult(True)

    @property
    def done(self) -> bool:
        return not legal_moves(self.history)

    def chips(self) -> tuple[int, int]:
        """Chips won by (player 0, player 1) in the finished hand."""
        won = settle(self.cards, self.public, self.history)
        if won is None:
            raise GameError("chips() was called before the hand ended.")
        return won

    def returns(self) -> tuple[float, float]:
        won = self.chips()
        return (won[0] / CHIPS_PER_REWARD, won[1] / CHIPS_PER_REWARD)

    @property
    def outcome_reason(self) -> str:
        if not self.done:
            return ""
        won = self.chips()
        if self.history[-1] == "fold":
            folder = actor(self.history[:-1])
            return f"Player {folder} folded; Player {1 - folder} wins {won[1 - folder]} chips."
        cards = f"Player 0 {self.cards[0]}, Player 1 {self.cards[1]}, public card {self.public}"
        winner = showdown_winner(self.cards, self.public)
        if winner is None:
            return f"Showdown ({cards}): equal cards split the pot."
        return f"Showdown ({cards}): Player {winner} wins {won[winner]} chips."

    def policy_state(self, role: int) -> dict[str, Any]:
        """What `role` knows: its card, the public card ("" before it is revealed), the moves."""
        return {
            "card": self.cards[role],
            "public": self._public_seen(),
            "history": tuple(self.history),
        }


def info_set(observation: Observation) -> InfoSet:
    """The information set of an observation `LeducPokerGame` made (its `policy_state`)."""
    state = cast(dict[str, Any], observation.state)
    return InfoSet(state["card"], state["public"], tuple(state["history"]))


@cache
def nash_strategy() -> Strategy:
    """The committed equilibrium (games/leduc_nash_table.py, CFR+; exploitability < 1e-6 chips
    per hand), with an invalid move's probability 0 last."""
    from games.leduc_nash_table import TABLE

    table = {
        InfoSet(card, public, tuple(moves.split())): probs
        for (card, public, moves), probs in TABLE.items()
    }
    return {info: (*table[info], 0.0) for info in INFO_SETS}


class LeducNashPolicy:
    """The `expert`: an approximate Nash equilibrium of Leduc Hold'em computed by CFR+
    (games/leduc_solver.py), played from the committed table. It states its probabilities, so
    its exploitability is measured exactly."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.strategy = nash_strategy()

    def reseed(self, seed: int) -> None:
        """Restart its choices from `seed` (a collect or evaluation replays identically)."""
        self.rng.seed(seed)

    def action_probabilities(self, observations: Sequence[Observation]) -> list[dict[str, Any]]:
        """The equilibrium's probability of each legal move at each observation."""
        out = []
        for obs in observations:
            info = info_set(obs)
            moves = legal_moves(info.history)  # the strategy's last entry, invalid, is 0
            out.append({f"[{m}]": p for m, p in zip(moves, self.strategy[info][:-1], strict=True)})
        return out

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        outputs = []
        for stated in self.action_probabilities(observations):
            move = self.rng.choices(list(stated), weights=list(stated.values()))[0]
            outputs.append(PolicyOutput(text=f"\\boxed{{{move}}}"))
        return outputs
