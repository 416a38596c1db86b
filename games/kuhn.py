"""Kuhn Poker as SPIRAL trained it (a TextArena env), its action parser, its table drawn for the
replay page, Nash opponent and the exact exploitability of a policy's one-round strategy.

Rules: a J/Q/K deck, each player antes 1 and gets one card, the first player alternates each
round, actions are check/bet (1 chip)/call/fold. After `num_rounds` rounds the player with more
chips gets +1 and the other -1; equal chips is a draw (0). TextArena 0.7.4's own KuhnPoker-v0
never moves chips on bet/call, so this env is written from the rules instead.
"""

from __future__ import annotations

import html
import itertools
import random
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple, TypeAlias, cast

import textarena as ta
from textarena.envs.registration import ENV_REGISTRY, register

from spiral_games.config.choices import InvalidMove
from spiral_games.errors import ConfigError, GameError
from spiral_games.play.game import SavedTurn, TextArenaGame
from spiral_games.play.loop import GameRules, GameSession, replayed
from spiral_games.play.policy import Policy, ScoringPolicy, scores_actions
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


PAST = {"check": "checked", "bet": "bet", "call": "called", "fold": "folded"}
REWARDS = ("chips", "win_loss")
CHIPS_PER_REWARD = 2  # reward=chips: a round moves at most 2 chips, so one round's lies in [-1, 1]
BOARD_CSS = """
.board.kuhn{margin:.3em 0}
.card{display:inline-block;border:1px solid #555;border-radius:4px;padding:.1em .4em;
background:#fff;font-weight:bold;font-family:serif;box-shadow:1px 1px 2px #aaa}
.showdown{color:#555;font-size:.9em}
"""


class KuhnPokerGame(TextArenaGame):
    """The `kuhn` game: SpiralKuhnPoker-v0 with full-history observations.

    `reward`: `chips` (the default), each seat's chips won over the game / 2, zero-sum; or
    `win_loss`, SPIRAL's +1/-1 by which seat ends with more chips. One hand scored by win/loss is
    a different game from Kuhn Poker: calling never does worse than folding under it, whatever
    the pot, so every never-fold strategy is an equilibrium of that reward (each 1/3 chip
    exploitable in real Kuhn); chips won keeps Kuhn's own payoffs and so its Nash equilibrium.

    `card_in_reply`: under a masked choice, the reply starts with the seat's card ("K: "),
    written for the model, and the choice follows it. After the prompt alone, an update moves a
    small model's choice with all three cards at once (SmolLM2-135M: the gradients of the
    bet-or-check logit holding J and holding K have cosine 0.998); right after the card they
    differ (cosine 0.89), and the untrained model already bets more with K (0.34) than J (0.20).
    """

    board_css = BOARD_CSS

    def __init__(
        self, num_rounds: int = 1, reward: str = "chips", card_in_reply: bool = True
    ) -> None:
        if reward not in REWARDS:
            raise ConfigError(
                f"games.kuhn.env.reward={reward!r} is not a Kuhn reward: use chips (chips won, "
                "Kuhn's own payoffs) or win_loss (SPIRAL's +1/-1 by chip totals)."
            )
        self.reward = reward
        self.card_in_reply = card_in_reply
        super().__init__(
            "SpiralKuhnPoker-v0",
            name="kuhn",
            legal_actions=_legal,
            policy_state=_policy_state,
            num_rounds=num_rounds,
        )

    @property
    def chips_per_reward(self) -> float:
        """Chips one unit of this game's reward is worth: how an invalid-move penalty (given
        in reward) counts in chips for the exploitability measure."""
        return CHIPS_PER_REWARD if self.reward == "chips" else 1.0

    def returns(self) -> tuple[float, float]:
        win_loss = super().returns()
        if self.reward == "win_loss":
            return win_loss
        chips = self.raw.state.game_state["chips"]
        return (chips[0] / CHIPS_PER_REWARD, chips[1] / CHIPS_PER_REWARD)

    def reply_prefix(self, role: int) -> str | None:
        """The seat's card and a colon ("K: "): the masked choice follows it (`card_in_reply`)."""
        if not self.card_in_reply:
            return None
        return f"{self.raw.state.game_state['cards'][role]}: "

    def current_state(self, role: int) -> str:
        """One line of rules, then this round: seat, chips, the card and the betting so far
        (the card last but the betting, next to the decision it conditions)."""
        env = self.raw
        gs = env.state.game_state
        betting = ", ".join(
            f"Player {(gs['first'] + k) % 2} {PAST[move]}" for k, move in enumerate(gs["history"])
        )
        match = ""
        if env.num_rounds > 1:
            match = (
                f" Round {gs['round']}/{env.num_rounds}, chips: you {gs['chips'][role]:+d}, "
                f"opponent {gs['chips'][1 - role]:+d}; more chips after the last round wins."
            )
        return (  # the short prompt lists the legal moves after it
            f"Kuhn Poker: J < Q < K, ante {env.ante}, a bet or call adds 1 chip, the higher card "
            f"takes the pot.{match}\nYou are Player {role}; Player {gs['first']} acts first. "
            f"Your card: {gs['cards'][role]}.\nBetting so far: {betting or 'none'}."
        )

    def draw_boards(self, turns: Sequence[SavedTurn]) -> list[str]:
        """The acting player's card and the pot after each turn."""
        return [
            _table_html(view, int(turn["role"]))
            for view, turn in zip(kuhn_views(turns), turns, strict=True)
        ]


# The replay page's drawing, rebuilt from a saved game's turns: the deal and showdown lines of
# the observations (`KuhnPokerEnv._start_round`, `_finish`) and the valid moves.
_DEAL = re.compile(
    r"Round (\d+)/(\d+)\. Your card: (\w+)\. Chips so far: you ([+-]?\d+), opponent ([+-]?\d+)"
)
_OVER = re.compile(
    r"Round (\d+) over: cards were Player 0 (\w+), Player 1 (\w+)\. "
    r"Chips: Player 0 ([+-]?\d+), Player 1 ([+-]?\d+)"
)
_ANTE = re.compile(r"ante (\d+) chip")
_MOVE = re.compile(r"\[\s*(\w+)\s*\]")


@dataclass(frozen=True)
class KuhnView:
    """What one Kuhn turn looked like: the actor's card as shown to it, and the chips."""

    round: int  # 0 when the observation named no round
    rounds: int
    card: str  # the acting role's card ("" if never shown)
    chips: tuple[int, int]  # game totals (Player 0, Player 1) before this round
    pot: tuple[int, int]  # chips each role has put in this round, this turn's move included
    betting: tuple[str, ...]  # this round's moves so far, this turn's included
    showdown: str  # the previous round's revealed cards, on a round's first turn


def kuhn_views(turns: Sequence[SavedTurn]) -> list[KuhnView]:
    """Replay a Kuhn game from its observations (round, card, chips) and valid moves (pot)."""
    cards: dict[int, str] = {}
    rnd, rounds, chips = 0, 0, (0, 0)
    ante = 1
    pot = [ante, ante]  # chips each role has put in this round
    betting: list[str] = []
    out: list[KuhnView] = []
    for turn in turns:
        role, prompt = int(turn["role"]), str(turn.get("prompt", ""))
        ante_stated = _ANTE.findall(prompt)
        ante = int(ante_stated[-1]) if ante_stated else ante
        showdown = ""
        deals = _DEAL.findall(prompt)
        if deals:
            number, total, card, mine, theirs = deals[-1]
            cards[role], rounds = card, int(total)
            chips = (int(mine), int(theirs)) if role == 0 else (int(theirs), int(mine))
            if int(number) > rnd:
                rnd, pot, betting = int(number), [ante, ante], []
                overs = _OVER.findall(prompt)
                if overs and int(overs[-1][0]) == rnd - 1:
                    showdown = (
                        f"round {overs[-1][0]}: Player 0 {overs[-1][1]}, Player 1 {overs[-1][2]}"
                    )
        move = _MOVE.fullmatch(str(turn.get("action") or "").strip())
        if turn.get("valid") and move:
            betting.append(move[1].lower())
            if move[1].lower() in ("bet", "call"):  # a bet is one chip, whatever the ante
                pot[role] += 1
        out.append(
            KuhnView(
                rnd, rounds, cards.get(role, ""), chips, (pot[0], pot[1]), tuple(betting), showdown
            )
        )
    return out


def _table_html(view: KuhnView, role: int) -> str:
    card = html.escape(view.card) or "?"
    rounds = f"/{view.rounds}" if view.rounds else ""
    shown = (
        f'<div class="showdown">showdown {html.escape(view.showdown)}</div>'
        if view.showdown
        else ""
    )
    return (
        f'<div class="board kuhn">{shown}<span class="card" title="Player {role}\'s card">{card}'
        f"</span> round {view.round}{rounds} · pot {sum(view.pot)} (Player 0 put in "
        f"{view.pot[0]}, Player 1 {view.pot[1]}) · betting: {html.escape(', '.join(view.betting))}"
        f" · chips before this round: Player 0 {view.chips[0]:+d}, Player 1 {view.chips[1]:+d}"
        "</div>"
    )


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

    def reseed(self, seed: int) -> None:
        """Restart its choices from `seed` (a collect or evaluation replays identically)."""
        self.rng.seed(seed)

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

    def action_probabilities(self, observations: Sequence[Observation]) -> list[dict[str, Any]]:
        """The exact probability of each legal move (`[bet]`/`[check]` or `[call]`/`[fold]`)."""
        out = []
        for obs in observations:
            state = cast(dict[str, Any], obs.state)
            history = tuple(state["history"])
            p = self.bet_or_call_probability(state["card"], history)
            aggressive, passive, _ = _moves(history)
            out.append({f"[{aggressive}]": p, f"[{passive}]": 1 - p})
        return out

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


# Exact exploitability of a Kuhn strategy (docs/evaluation.md): the 12 information sets of one
# round, the exact best response, and the estimate of a policy's strategy from its sampled replies.

Prob: TypeAlias = Fraction | float
Outcome: TypeAlias = tuple[Prob, Prob]  # chips of (first actor, second actor)
AGGRESSIVE, PASSIVE, INVALID = 0, 1, 2  # positions in a strategy's triple and in reply counts
_INVALID = "invalid"  # marks a line that an invalid move ended


class InfoSet(NamedTuple):
    """What the acting seat knows in one round: its own card and the betting so far."""

    card: str
    history: tuple[str, ...]

    @property
    def seat(self) -> int:
        """0: the round's first actor (role 0 in round 1), 1: the second actor."""
        return len(self.history) % 2


INFO_SETS = tuple(
    InfoSet(card, history)
    for history in ((), ("check",), ("bet",), ("check", "bet"))
    for card in RANKS
)
# info set -> probabilities of (bet or call, check or fold, invalid move), summing to 1
Strategy = Mapping[InfoSet, tuple[Prob, Prob, Prob]]
# info set -> how many replies were (aggressive, passive, invalid)
ReplyCounts = dict[InfoSet, tuple[int, int, int]]


def _moves(history: tuple[str, ...]) -> tuple[str, str, str]:
    """The (aggressive, passive, invalid) moves at a decision after `history`."""
    return ("call", "fold", _INVALID) if history[-1:] == ("bet",) else ("bet", "check", _INVALID)


def _outcome(first: str, second: str, history: tuple[str, ...], invalid: Outcome) -> Outcome | None:
    """Chips of (first actor, second actor) once the line `history` is over; None before."""
    if history[-1:] == (_INVALID,):
        penalty, reward = invalid
        return (penalty, reward) if len(history) % 2 == 1 else (reward, penalty)
    return settle((first, second), history)


def _exact_invalid(strategy: Strategy, invalid: Outcome) -> Outcome:
    """Checks `strategy`; the invalid outcome as Fractions when the strategy is exact."""
    for info in INFO_SETS:
        probs = strategy.get(info)
        if probs is None or min(probs) < 0 or abs(float(sum(probs)) - 1) > 1e-9:
            raise ValueError(f"strategy at {info} must be 3 probabilities summing to 1: {probs}")
    if all(isinstance(p, Fraction | int) for info in INFO_SETS for p in strategy[info]):
        return (Fraction(invalid[0]), Fraction(invalid[1]))  # exact for binary floats
    return invalid


def self_play_values(strategy: Strategy, *, invalid: Outcome) -> Outcome:
    """Expected chips of (first actor, second actor) when `strategy` plays both seats."""
    invalid = _exact_invalid(strategy, invalid)

    def value(cards: tuple[str, str], history: tuple[str, ...]) -> Outcome:
        end = _outcome(*cards, history, invalid)
        if end is not None:
            return end
        probs = strategy[InfoSet(cards[len(history) % 2], history)]
        first: Prob = 0
        second: Prob = 0
        for move, p in zip(_moves(history), probs, strict=True):
            if p:
                below = value(cards, (*history, move))
                first, second = first + p * below[0], second + p * below[1]
        return first, second

    deals = list(itertools.permutations(RANKS, 2))
    values = [value((a, b), ()) for a, b in deals]
    return (
        sum((v[0] for v in values), Fraction(0)) / len(deals),
        sum((v[1] for v in values), Fraction(0)) / len(deals),
    )


def best_response_values(strategy: Strategy, *, invalid: Outcome) -> Outcome:
    """Expected chips of a best responder in each seat, (first actor, second actor), when
    `strategy` plays the other seat. The responder knows its card and the betting, and may
    move invalidly too; the maximum is taken per information set, over the other seat's
    cards weighted by chance and by `strategy`'s probability of the betting so far."""
    invalid = _exact_invalid(strategy, invalid)

    def value(seat: int, card: str, history: tuple[str, ...], reach: dict[str, Prob]) -> Prob:
        if _outcome("K", "J", history, invalid) is not None:  # over: whatever the cards
            total: Prob = 0
            for other, weight in reach.items():
                cards = (card, other) if seat == 0 else (other, card)
                total += weight * cast(Outcome, _outcome(*cards, history, invalid))[seat]
            return total
        if len(history) % 2 == seat:
            return max(value(seat, card, (*history, move), reach) for move in _moves(history))
        total = 0
        for k, move in enumerate(_moves(history)):
            below = {o: w * strategy[InfoSet(o, history)][k] for o, w in reach.items()}
            if any(below.values()):
                total += value(seat, card, (*history, move), below)
        return total

    chance = Fraction(1, 6)  # each of the 6 deals
    return cast(
        Outcome,
        tuple(
            sum(
                (value(seat, c, (), {o: chance for o in RANKS if o != c}) for c in RANKS),
                Fraction(0),
            )
            for seat in (0, 1)
        ),
    )


def exploitability(strategy: Strategy, *, invalid: Outcome) -> Prob:
    """Exploitability of `strategy` in one-round Kuhn, in chips per round, in self-play.

    The policy plays both seats with `strategy`. For seat i (first or second actor), u_i is
    its expected chips in self-play and BR_i the expected chips of a best responder in seat i
    against `strategy` in the other seat (exact: the 6 deals and every line enumerated). The
    value is NashConv / 2 = sum_i (BR_i - u_i) / 2 (Lanctot et al. 2017, "A Unified
    Game-Theoretic Approach to Multiagent RL", NashConv; OpenSpiel's exploitability is
    NashConv / num_players). Legal play is zero-sum (u_0 + u_1 = 0), so without invalid moves
    this is (BR_0 + BR_1) / 2, the mean over seats of what a best responder wins: 0 exactly
    at a Nash equilibrium, where BR_0 = -1/18 (the first actor's game value) and BR_1 = +1/18.

    An invalid move ends the round at once: `invalid = (penalty, opponent_reward)` are the
    chips of the offender and of the other seat, the game's `invalid_penalty` and
    `invalid_opponent_reward` (GameConfig defaults -1.5 and +0.5, SPIRAL's rewards; -1/+1
    makes it zero-sum). Those two need not sum to 0, hence the general NashConv form, which
    stays >= 0 and is 0 only at an equilibrium of the game as configured (the responder may
    move invalidly too). An invalid move raises its own seat's term BR_i - u_i by the gap
    between the move it replaces and the penalty; the reward enters both BR_j and u_j of the
    other seat, cancelling where the best responder reaches the move as often as self-play.
    So at Nash an invalid move instead of a fold adds (fold - penalty) / 2 = 1/4 chip (at the
    defaults) times how often it is reached, while one replacing a move worse than the
    penalty (calling with J: -2) can lower the value. Exact Fractions in, Fractions out.
    """
    best = best_response_values(strategy, invalid=invalid)
    own = self_play_values(strategy, invalid=invalid)
    return (best[0] - own[0] + best[1] - own[1]) / 2


def strategy_from_counts(counts: ReplyCounts) -> dict[InfoSet, tuple[Prob, Prob, Prob]]:
    """The empirical strategy of reply counts, as exact Fractions."""
    return {
        info: (Fraction(c[0], sum(c)), Fraction(c[1], sum(c)), Fraction(c[2], sum(c)))
        for info, c in counts.items()
    }


def bootstrap_exploitability(
    counts: ReplyCounts, *, invalid: Outcome, resamples: int, seed: int
) -> tuple[float, float]:
    """(exploitability of the counts' frequencies, its bootstrap standard error): each
    information set's replies are resampled with replacement `resamples` times."""
    value = float(exploitability(strategy_from_counts(counts), invalid=invalid))
    rng = random.Random(seed)
    fast = (float(invalid[0]), float(invalid[1]))
    replicates = []
    for _ in range(resamples):
        resampled: dict[InfoSet, tuple[Prob, Prob, Prob]] = {}
        for info, c in counts.items():
            n = sum(c)
            drawn = rng.choices(range(3), weights=c, k=n)
            resampled[info] = (drawn.count(0) / n, drawn.count(1) / n, drawn.count(2) / n)
        replicates.append(float(exploitability(resampled, invalid=fast)))
    return value, statistics.stdev(replicates) if len(replicates) > 1 else 0.0


def _session_at(rules: GameRules, history: tuple[str, ...], seed: int) -> GameSession:
    """A game of `rules` from `seed`, played through GameSession to `history` in round 1."""
    return replayed(rules, seed, [f"[{move}]" for move in history])


def _deal_for(rules: GameRules, info: InfoSet, seed: int) -> tuple[int, Observation]:
    """The first seed from `seed` whose deal gives the acting seat `info.card`, and the
    observation it sees at `info` (set by the env's own deal, so the text is the real one)."""
    for candidate in range(seed, seed + 1000):
        observation = cast(Observation, _session_at(rules, info.history, candidate).pending())
        if cast(dict[str, Any], observation.state)["card"] == info.card:
            return candidate, observation
    raise GameError(f"no seed in [{seed}, {seed + 1000}) deals {info.card} at {info}")


def _classify(rules: GameRules, info: InfoSet, seed: int, reply: PolicyOutput) -> int:
    """AGGRESSIVE, PASSIVE or INVALID: the reply submitted to a game at `info`, as play does."""
    session = _session_at(rules, info.history, seed)
    session.submit(cast(Observation, session.pending()), reply)
    if len(session.turns) == len(info.history):  # no move played (context overflow): invalid
        return INVALID
    turn = session.turns[-1]
    if not turn.valid:
        return INVALID
    return AGGRESSIVE if turn.action == f"[{_moves(info.history)[0]}]" else PASSIVE


def _require_kuhn(rules: GameRules) -> None:
    if not isinstance(rules.make_env(), KuhnPokerGame):
        raise GameError(f"game {rules.name!r} is not Kuhn Poker (games.kuhn.KuhnPokerGame)")


def estimate_strategy(policy: Policy, rules: GameRules, samples: int, seed: int) -> ReplyCounts:
    """Sample `policy`'s replies at each of the 12 information sets and count them.

    Each information set's observation is the one play gives: a real game of `rules` (seeded
    from `seed` until the deal gives the acting seat the card) is played through
    `GameSession` to the betting history, and its `pending()` observation is asked
    `samples` times, all 12 * `samples` in one `act` call so an LLM policy batches them.
    Each reply is submitted to its own copy of that game, so it is parsed exactly as in play
    (`rules.action_format`, the env's legality check); a reply play rejects counts as an
    invalid move. The estimated strategy is `strategy_from_counts` of the result.

    Sampling, not scoring each legal action's log-probability, because it measures what the
    model does in play: chat models reason before they answer, invalid replies are part of
    their strategy, and any `Policy` (scripted, transformers, vLLM) can be asked. Scoring
    would need a log-prob API the Policy interface lacks and would skip the reasoning. The
    price is sampling noise, which `bootstrap_exploitability` reports.

    A game of several rounds is measured on its first round (chips 0-0, role 0 acts first).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    _require_kuhn(rules)
    deals = {info: _deal_for(rules, info, seed) for info in INFO_SETS}
    asked = [deals[info][1] for info in INFO_SETS for _ in range(samples)]
    replies = policy.act(asked)
    if len(replies) != len(asked):
        raise GameError(f"{type(policy).__name__} answered {len(replies)} of {len(asked)}")
    counts: ReplyCounts = {}
    for k, info in enumerate(INFO_SETS):
        tally = [0, 0, 0]
        for reply in replies[k * samples : (k + 1) * samples]:
            tally[_classify(rules, info, deals[info][0], reply)] += 1
        counts[info] = (tally[0], tally[1], tally[2])
    return counts


def invalid_outcome(rules: GameRules) -> Outcome:
    """Chips of (offender, other seat) for an invalid reply under `rules`: the rewards play
    gives it, in chips (`KuhnPokerGame.chips_per_reward`), so the measure scores an invalid
    reply as training does. With invalid_move=retry the retries are not simulated: each invalid
    reply counts as the last one, which play scores -1/+1 (so this overstates its cost)."""
    env = rules.make_env()
    scale = env.chips_per_reward if isinstance(env, KuhnPokerGame) else 1.0
    game = rules.config
    if game.invalid_move == InvalidMove.penalty:
        return (game.invalid_penalty * scale, game.invalid_opponent_reward * scale)
    return (-scale, scale)


def stated_strategy(policy: ScoringPolicy, rules: GameRules, seed: int) -> Strategy:
    """The strategy `policy` states (`action_probabilities`) at the 12 information sets, asked
    with the observations play gives (as `estimate_strategy`); what its probabilities of the
    two legal moves leave of 1 is its chance of an invalid reply."""
    _require_kuhn(rules)
    asked = [_deal_for(rules, info, seed)[1] for info in INFO_SETS]
    stated = policy.action_probabilities(asked)
    strategy: dict[InfoSet, tuple[Prob, Prob, Prob]] = {}
    for info, probs in zip(INFO_SETS, stated, strict=True):
        aggressive, passive, _ = _moves(info.history)
        a, p = probs.get(f"[{aggressive}]", 0), probs.get(f"[{passive}]", 0)
        rest = 1 - a - p  # floats (a model's probabilities) may round a little below 0
        strategy[info] = (a, p, max(rest, 0.0) if isinstance(rest, float) else rest)
    return strategy


class KuhnExploitability:
    """Measures a policy's exploitability in one-round Kuhn for `eval/kuhn/*`. A policy that
    states its action probabilities (`ScoringPolicy`: the scripted players) is measured exactly
    (standard error 0); any other from `samples` sampled replies per information set, with a
    standard error from `bootstrap` resamples. `exact=False` samples every policy."""

    def __init__(self, samples: int = 32, bootstrap: int = 200, exact: bool = True) -> None:
        if samples < 1 or bootstrap < 2:
            raise ValueError(f"need samples >= 1 and bootstrap >= 2, got {samples}, {bootstrap}")
        self.samples = samples
        self.bootstrap = bootstrap
        self.exact = exact

    def measure(self, policy: Policy, rules: GameRules, seed: int) -> dict[str, float]:
        """exploitability (chips per round, see `exploitability`) and its standard error,
        each seat's best-response value, and the share of invalid replies."""
        invalid = invalid_outcome(rules)
        if self.exact and scores_actions(policy, rules.name):
            strategy = stated_strategy(policy, rules, seed)
            value, se = float(exploitability(strategy, invalid=invalid)), 0.0
            invalid_share = sum(float(s[INVALID]) for s in strategy.values()) / len(INFO_SETS)
        else:
            counts = estimate_strategy(policy, rules, self.samples, seed)
            value, se = bootstrap_exploitability(
                counts, invalid=invalid, resamples=self.bootstrap, seed=seed
            )
            strategy = strategy_from_counts(counts)
            invalid_replies = sum(c[INVALID] for c in counts.values())
            invalid_share = invalid_replies / (self.samples * len(INFO_SETS))
        first, second = best_response_values(strategy, invalid=invalid)
        return {
            "exploitability": value,
            "exploitability_se": se,
            "best_response_first": float(first),
            "best_response_second": float(second),
            "invalid_share": invalid_share,
            **strategy_metrics(strategy),
        }


_LINE_NAMES = {(): "first", ("check",): "after_check", ("bet",): "after_bet"}


def strategy_metrics(strategy: Strategy) -> dict[str, float]:
    """The probability of the aggressive move (bet or call) at each information set, as
    `strategy/<card>_<line>_<move>` (e.g. `strategy/J_after_bet_call`): the curves that show
    whether the card is learned, which exploitability alone hides."""
    out = {}
    for info in INFO_SETS:
        line = _LINE_NAMES.get(info.history, "check_bet")
        out[f"strategy/{info.card}_{line}_{_moves(info.history)[0]}"] = float(strategy[info][0])
    return out
