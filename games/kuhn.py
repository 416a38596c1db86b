"""Kuhn Poker as SPIRAL trained it (a TextArena env), its action parser and Nash opponent.

Rules: a J/Q/K deck, each player antes 1 and gets one card, the first player alternates each
round, actions are check/bet (1 chip)/call/fold. After `num_rounds` rounds the player with more
chips gets +1 and the other -1; equal chips is a draw (0). TextArena 0.7.4's own KuhnPoker-v0
never moves chips on bet/call, so this env is written from the rules instead.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, cast

import textarena as ta
from textarena.envs.registration import ENV_REGISTRY, register

from spiral_games.play.game import TextArenaGame
from spiral_games.types import Observation, PolicyOutput

ENV_ID = "SpiralKuhnPoker-v0"
RANKS = {"J": 0, "Q": 1, "K": 2}
_ACTION = re.compile(r"\[\s*(check|bet|call|fold)\s*\]", re.IGNORECASE)


def legal_moves(history: Sequence[str]) -> list[str]:
    """Legal moves after a round's betting `history` (empty list once the round is over)."""
    if list(history) in ([], ["check"]):
        return ["check", "bet"]
    if history and history[-1] == "bet":
        return ["call", "fold"]
    return []


def settle(cards: tuple[str, str], history: Sequence[str], ante: int = 1) -> tuple[int, int] | None:
    """Chip change of (first actor, second actor) for a finished round; None if not finished.

    `cards[0]` belongs to the player who acted first in the round.
    """
    h = list(history)
    if h == ["check", "check"]:
        pot_share = ante
    elif h in (["bet", "call"], ["check", "bet", "call"]):
        pot_share = ante + 1
    elif h == ["bet", "fold"]:
        return (ante, -ante)
    elif h == ["check", "bet", "fold"]:
        return (-ante, ante)
    else:
        return None
    first_wins = RANKS[cards[0]] > RANKS[cards[1]]
    return (pot_share, -pot_share) if first_wins else (-pot_share, pot_share)


class KuhnPokerEnv(ta.Env):
    """Multi-round Kuhn Poker on TextArena's 0.7 State API (registered as SpiralKuhnPoker-v0)."""

    def __init__(self, num_rounds: int = 1, ante: int = 1) -> None:
        if num_rounds < 1:
            raise ValueError(f"num_rounds must be >= 1, got {num_rounds}")
        self.num_rounds = num_rounds
        self.ante = ante

    def reset(self, num_players: int, seed: int | None = None) -> None:
        self.state = ta.TwoPlayerState(num_players=num_players, seed=seed)
        game_state = {"round": 0, "chips": {0: 0, 1: 0}, "cards": {}, "history": [], "first": 0}
        self.state.reset(game_state=game_state, player_prompt_function=self._prompt)
        self._start_round()

    def _prompt(self, player_id: int, game_state: dict[str, Any]) -> str:
        return (
            f"You are Player {player_id} in a {self.num_rounds}-round game of Kuhn Poker.\n"
            "Rules: the deck has three cards, J < Q < K. Each round both players ante "
            f"{self.ante} chip and get one card; the first player to act alternates each round.\n"
            "Actions: '[check]' (pass when no bet is pending), '[bet]' (add 1 chip), "
            "'[call]' (match a bet), '[fold]' (give up the pot).\n"
            "At showdown the higher card takes the pot. After the last round the player with "
            "more chips wins the game."
        )

    def _start_round(self) -> None:
        gs = self.state.game_state
        gs["round"] += 1
        gs["history"] = []
        gs["first"] = (gs["round"] - 1) % 2
        deal = random.sample(list(RANKS), 2)
        gs["cards"] = {0: deal[0], 1: deal[1]}
        self.state.manually_set_current_player_id(gs["first"])
        for pid in (0, 1):
            self.state.add_observation(
                to_id=pid,
                message=(
                    f"Round {gs['round']}/{self.num_rounds}. Your card: {gs['cards'][pid]}. "
                    f"Chips so far: you {gs['chips'][pid]:+d}, opponent {gs['chips'][1 - pid]:+d}. "
                    f"Player {gs['first']} acts first."
                ),
                observation_type=ta.ObservationType.GAME_MESSAGE,
            )
        self._announce_moves()

    def _announce_moves(self) -> None:
        moves = ", ".join(f"[{m}]" for m in legal_moves(self.state.game_state["history"]))
        self.state.add_observation(
            to_id=self.state.current_player_id,
            message=f"Your available actions: {moves}",
            observation_type=ta.ObservationType.GAME_BOARD,
        )

    def step(self, action: str) -> tuple[bool, ta.Info]:
        gs = self.state.game_state
        pid = self.state.current_player_id
        self.state.add_observation(
            from_id=pid, message=action, observation_type=ta.ObservationType.PLAYER_ACTION
        )
        found = _ACTION.findall(action)
        move = found[-1].lower() if found else None
        if move not in legal_moves(gs["history"]):
            legal = ", ".join(f"[{m}]" for m in legal_moves(gs["history"]))
            self.state.set_invalid_move(reason=f"'{action[:60]}' is not one of {legal}.")
            return self.state.step(rotate_player=False)
        gs["history"].append(move)
        self.state.add_observation(
            message=f"Player {pid} chose [{move}].",
            observation_type=ta.ObservationType.GAME_ACTION_DESCRIPTION,
        )
        first = gs["first"]
        result = settle((gs["cards"][first], gs["cards"][1 - first]), gs["history"], self.ante)
        if result is None:
            self.state.manually_set_current_player_id(1 - pid)
            self._announce_moves()
            return self.state.step(rotate_player=False)
        gs["chips"][first] += result[0]
        gs["chips"][1 - first] += result[1]
        self.state.add_observation(
            message=(
                f"Round {gs['round']} over: cards were Player 0 {gs['cards'][0]}, Player 1 "
                f"{gs['cards'][1]}. Chips: Player 0 {gs['chips'][0]:+d}, "
                f"Player 1 {gs['chips'][1]:+d}."
            ),
            observation_type=ta.ObservationType.GAME_MESSAGE,
        )
        if gs["round"] >= self.num_rounds:
            self._finish()
        else:
            self._start_round()
        return self.state.step(rotate_player=False)

    def _finish(self) -> None:
        chips = self.state.game_state["chips"]
        if chips[0] == chips[1]:
            self.state.set_draw(reason=f"Both players end with {chips[0]:+d} chips.")
        else:
            winner = 0 if chips[0] > chips[1] else 1
            self.state.set_winner(
                player_id=winner,
                reason=f"Player {winner} ends with more chips ({chips[winner]:+d}).",
            )


if ENV_ID not in ENV_REGISTRY:  # importing this module makes the env available to TextArena
    register(id=ENV_ID, entry_point=KuhnPokerEnv, default_wrappers=None)


def _legal(env: KuhnPokerEnv, role: int) -> list[str]:
    return [f"[{m}]" for m in legal_moves(env.state.game_state["history"])]


def _policy_state(env: KuhnPokerEnv, role: int) -> dict[str, Any]:
    gs = env.state.game_state
    return {"card": gs["cards"][role], "history": tuple(gs["history"]), "round": gs["round"]}


class KuhnPokerGame(TextArenaGame):
    """The `kuhn` game: SpiralKuhnPoker-v0 with full-history observations."""

    def __init__(self, num_rounds: int = 1) -> None:
        super().__init__(
            "SpiralKuhnPoker-v0",
            name="kuhn",
            legal_actions=_legal,
            policy_state=_policy_state,
            num_rounds=num_rounds,
        )

    def current_state(self, role: int) -> str:
        """One paragraph of rules, and this round's card, chips and betting."""
        env = self.raw
        gs = env.state.game_state
        betting = " ".join(
            f"Player {(gs['first'] + k) % 2} chose [{move}]."
            for k, move in enumerate(gs["history"])
        )
        return (  # the short prompt lists the legal moves after it
            f"Kuhn Poker, {env.num_rounds} round(s): cards J < Q < K, both ante {env.ante}; "
            "[bet] adds 1 chip, [call] matches it, [fold] gives up the pot, [check] passes. The "
            "higher card takes the pot; more chips at the end wins.\n"
            f"You are Player {role}. Round {gs['round']}/{env.num_rounds}. Your card: "
            f"{gs['cards'][role]}. Chips so far: you {gs['chips'][role]:+d}, opponent "
            f"{gs['chips'][1 - role]:+d}. Player {gs['first']} acts first.\n" + betting
        ).rstrip()


class KuhnNashPolicy:
    """A Nash-equilibrium Kuhn player from the one-parameter family (Kuhn 1950), alpha in [0, 1/3].

    As first actor it bets J with prob alpha, K with prob 3*alpha, and calls a bet with Q with
    prob alpha + 1/3; as second actor it bets J after a check with prob 1/3 and calls with Q
    with prob 1/3. The first actor's expected value per round is -1/18 for every alpha.
    """

    def __init__(self, alpha: float = 0.0, seed: int = 0) -> None:
        if not 0 <= alpha <= 1 / 3:
            raise ValueError(f"alpha must be in [0, 1/3], got {alpha}")
        self.alpha = Fraction(alpha).limit_denominator(1000)
        self.rng = random.Random(seed)

    def bet_or_call_probability(self, card: str, history: Sequence[str]) -> Fraction:
        """Probability of the aggressive move (bet, or call when facing a bet)."""
        a, third = self.alpha, Fraction(1, 3)
        table = {
            (): {"J": a, "Q": Fraction(0), "K": 3 * a},
            ("check", "bet"): {"J": Fraction(0), "Q": a + third, "K": Fraction(1)},
            ("bet",): {"J": Fraction(0), "Q": third, "K": Fraction(1)},
            ("check",): {"J": third, "Q": Fraction(0), "K": Fraction(1)},
        }
        return table[tuple(history)][card]

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        outputs = []
        for obs in observations:
            state = cast(dict[str, Any], obs.state)  # _policy_state's view
            card, history = state["card"], state["history"]
            aggressive = self.rng.random() < self.bet_or_call_probability(card, history)
            facing_bet = bool(history) and history[-1] == "bet"
            move = (
                ("call" if aggressive else "fold")
                if facing_bet
                else ("bet" if aggressive else "check")
            )
            outputs.append(PolicyOutput(text=f"\\boxed{{[{move}]}}"))
        return outputs
