"""Leduc Hold'em's game tree: the betting rules, the 288 information sets, and the exact best
response, self-play value and exploitability of a strategy given at every information set.

Standard Leduc (Southey et al. 2005, "Bayes' Bluff"; OpenSpiel's leduc_poker): a six-card deck
(J, J, Q, Q, K, K), ante 1 each, one private card each, two betting rounds with player 0 acting
first in both, bets and raises of 2 chips in round 1 and 4 in round 2, at most a bet and one
raise per round, a public card revealed between the rounds. At showdown a card that pairs the
public card wins, otherwise the higher card; equal ranks split the pot.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from fractions import Fraction
from functools import cache
from typing import NamedTuple, TypeAlias

RANKS = ("J", "Q", "K")
ANTE = 1
BET_SIZES = (2, 4)  # a bet or raise in round 1, in round 2
MAX_RAISES = 2  # per round, the bet included: a bet and one raise
MAX_CHIPS = ANTE + 2 * BET_SIZES[0] + 2 * BET_SIZES[1]  # 13: the most one hand moves
INVALID = "invalid"  # marks a line that an invalid move ended

Prob: TypeAlias = Fraction | float
Outcome: TypeAlias = tuple[Prob, Prob]  # chips of (player 0, player 1), or (offender, other)


def round_over(moves: Sequence[str]) -> bool:
    """Whether one round's `moves` close it (check-check, or a call); a fold ends the hand."""
    return list(moves) == ["check", "check"] or (bool(moves) and moves[-1] == "call")


def split_rounds(history: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """(round 1's moves, round 2's moves, None while round 1 goes on) of a hand's `history`."""
    h = tuple(history)
    for k in range(1, len(h) + 1):
        if round_over(h[:k]):
            return h[:k], h[k:]
    return h, None


def legal_moves(history: Sequence[str]) -> tuple[str, ...]:
    """The moves legal after `history` (all the hand's moves so far); () once the hand is over."""
    first, second = split_rounds(history)
    moves = first if second is None else second
    if "fold" in history or INVALID in history or (second is not None and round_over(second)):
        return ()
    if not moves or list(moves) == ["check"]:
        return ("check", "bet")
    if moves.count("raise") + 1 < MAX_RAISES:  # facing a bet: the bet is the first raise
        return ("call", "raise", "fold")
    return ("call", "fold")


def actor(history: Sequence[str]) -> int:
    """The player to act after `history` (player 0 opens both rounds)."""
    first, second = split_rounds(history)
    return len(first if second is None else second) % 2


def contributions(history: Sequence[str]) -> tuple[int, int]:
    """Chips each player has put into the pot after `history`, antes included."""
    spent = [ANTE, ANTE]
    first, second = split_rounds(history)
    for size, moves in zip(BET_SIZES, (first, second or ()), strict=True):
        for k, move in enumerate(moves):
            me = k % 2
            if move == "bet":
                spent[me] += size
            elif move == "raise":
                spent[me] = spent[1 - me] + size
            elif move == "call":
                spent[me] = spent[1 - me]
    return spent[0], spent[1]


def showdown_winner(cards: tuple[str, str], public: str) -> int | None:
    """0 or 1, whoever's card pairs `public`, else the higher card; None for equal ranks."""
    if cards[0] == cards[1]:
        return None
    for player in (0, 1):
        if cards[player] == public:
            return player
    return 0 if RANKS.index(cards[0]) > RANKS.index(cards[1]) else 1


def settle(cards: tuple[str, str], public: str, history: Sequence[str]) -> tuple[int, int] | None:
    """Chips won by (player 0, player 1) once the hand `history` is over; None before."""
    if legal_moves(history) or INVALID in history:
        return None
    spent = contributions(history)
    if history[-1] == "fold":
        loser = actor(history[:-1])
    else:
        winner = showdown_winner(cards, public)
        if winner is None:
            return (0, 0)
        loser = 1 - winner
    return (-spent[0], spent[0]) if loser == 0 else (spent[1], -spent[1])


class InfoSet(NamedTuple):
    """What the acting player knows: its card, the public card ("" in round 1), the betting."""

    card: str
    public: str
    history: tuple[str, ...]

    @property
    def seat(self) -> int:
        return actor(self.history)


def _decision_histories() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    stack: list[tuple[str, ...]] = [()]
    while stack:
        h = stack.pop()
        moves = legal_moves(h)
        if moves:
            found.append(h)
            stack.extend((*h, m) for m in reversed(moves))
    return sorted(found, key=lambda h: (len(h), h))


HISTORIES = tuple(_decision_histories())  # 6 in round 1, 5 x 6 in round 2
INFO_SETS = tuple(
    InfoSet(card, public, h)
    for h in HISTORIES
    for public in (("",) if split_rounds(h)[1] is None else RANKS)
    for card in RANKS
)  # 6 x 3 + 30 x 3 x 3 = 288
# info set -> probabilities of its legal moves (legal_moves' order), then of an invalid move
Strategy = Mapping[InfoSet, tuple[Prob, ...]]


@cache
def chance(exact: bool) -> dict[tuple[str, str, str], Prob]:
    """Probability of each deal (player 0's card, player 1's, the public card) by rank."""
    one = Fraction(1) if exact else 1.0
    out: dict[tuple[str, str, str], Prob] = {}
    for a, b, p in itertools.product(RANKS, repeat=3):
        left_b, left_p = 2 - (a == b), 2 - (a == p) - (b == p)
        if left_b > 0 and left_p > 0:
            out[(a, b, p)] = one * 2 / 6 * left_b / 5 * left_p / 4
    return out


class _Node(NamedTuple):
    moves: tuple[str, ...]  # () at a leaf
    actor: int
    deals_public: bool  # round 1 just closed: the public card comes next
    spent: tuple[int, int]


@cache
def _node(history: tuple[str, ...]) -> _Node:
    second = split_rounds(history)[1]
    return _Node(legal_moves(history), actor(history), second == (), contributions(history))


def check_strategy(strategy: Strategy, invalid: Outcome) -> Outcome:
    """Checks `strategy` covers every information set with probabilities summing to 1;
    returns `invalid` as Fractions when the strategy is exact (Fractions), else as given."""
    exact = True
    for info in INFO_SETS:
        probs = strategy.get(info)
        width = len(legal_moves(info.history)) + 1
        if (
            probs is None
            or len(probs) != width
            or any(p < 0 for p in probs)
            or abs(sum(float(p) for p in probs) - 1) > 1e-9
        ):
            raise ValueError(f"strategy at {info} must be {width} probabilities summing to 1")
        exact = exact and all(isinstance(p, Fraction | int) for p in probs)
    return (Fraction(invalid[0]), Fraction(invalid[1])) if exact else invalid


def _leaf(history: tuple[str, ...], move: str, invalid: Outcome) -> Outcome | None:
    """Chips of (player 0, player 1) after `move` where they do not depend on the cards."""
    if move == INVALID:
        offender = actor(history)
        return invalid if offender == 0 else (invalid[1], invalid[0])
    if move == "fold":
        spent = _node(history).spent
        return (-spent[0], spent[0]) if actor(history) == 0 else (spent[1], -spent[1])
    return None


def _showdown(cards: tuple[str, str], public: str, spent: tuple[int, int]) -> Outcome:
    winner = showdown_winner(cards, public)
    if winner is None:
        return (0, 0)
    return (spent[1], -spent[1]) if winner == 0 else (-spent[0], spent[0])


@cache
def _public_given(exact: bool) -> dict[tuple[str, str], dict[str, Prob]]:
    """(player 0's card, player 1's) -> the chance of each public card given them."""
    out: dict[tuple[str, str], dict[str, Prob]] = {}
    deals = chance(exact)
    for (a, b, p), w in deals.items():
        out.setdefault((a, b), {})[p] = w / sum(deals.get((a, b, q), 0) for q in RANKS)
    return out


def _moves(node: _Node) -> tuple[str, ...]:
    return (*node.moves, INVALID)


def self_play_values(strategy: Strategy, *, invalid: Outcome) -> Outcome:
    """Expected chips of (player 0, player 1) when `strategy` plays both seats.

    `invalid = (penalty, opponent_reward)`: the chips of the offender and of the other player
    when a move is invalid (it ends the hand)."""
    invalid = check_strategy(strategy, invalid)
    exact = isinstance(invalid[0], Fraction)
    given = _public_given(exact)
    deals: dict[tuple[str, str], Prob] = {}
    for (a, b, _), w in chance(exact).items():
        deals[(a, b)] = deals.get((a, b), 0) + w

    def value(history: tuple[str, ...], public: str, reach: dict[tuple[str, str], Prob]) -> Outcome:
        node = _node(history)
        if not node.moves:
            first = sum(w * _showdown(cards, public, node.spent)[0] for cards, w in reach.items())
            return (first, -first)
        if node.deals_public and not public:
            parts = [
                value(history, p, {c: w * given[c].get(p, 0) for c, w in reach.items()})
                for p in RANKS
            ]
            return (sum(v[0] for v in parts), sum(v[1] for v in parts))
        total: list[Prob] = [0, 0]
        for k, move in enumerate(_moves(node)):
            below = {
                cards: w * strategy[InfoSet(cards[node.actor], public, history)][k]
                for cards, w in reach.items()
            }
            mass = sum(below.values())
            if not mass:
                continue
            end = _leaf(history, move, invalid)
            part = (mass * end[0], mass * end[1]) if end else value((*history, move), public, below)
            total = [total[0] + part[0], total[1] + part[1]]
        return (total[0], total[1])

    return value((), "", deals)


def best_response_values(strategy: Strategy, *, invalid: Outcome) -> Outcome:
    """Expected chips of a best responder in each seat, (player 0, player 1), when `strategy`
    plays the other seat. The responder knows its card, the public card once dealt and the
    betting, and may move invalidly too; the maximum is taken per information set, over the
    other player's cards (and in round 1 the public card) weighted by chance and by
    `strategy`'s probability of the betting so far."""
    invalid = check_strategy(strategy, invalid)
    exact = isinstance(invalid[0], Fraction)
    given = _public_given(exact)
    deals = chance(exact)

    def value(
        seat: int, card: str, history: tuple[str, ...], public: str, reach: dict[str, Prob]
    ) -> Prob:
        node = _node(history)
        if not node.moves:
            return sum(
                w * _showdown(_pair(seat, card, o), public, node.spent)[seat]
                for o, w in reach.items()
            )
        if node.deals_public and not public:
            total: Prob = 0
            for p in RANKS:
                dealt = {o: w * given[_pair(seat, card, o)].get(p, 0) for o, w in reach.items()}
                total += value(seat, card, history, p, dealt)
            return total
        options: list[Prob] = []
        for k, move in enumerate(_moves(node)):
            below = (
                reach
                if node.actor == seat
                else {o: w * strategy[InfoSet(o, public, history)][k] for o, w in reach.items()}
            )
            end = _leaf(history, move, invalid)
            if end:
                options.append(sum(below.values()) * end[seat])
            elif node.actor == seat or any(below.values()):
                options.append(value(seat, card, (*history, move), public, below))
        return max(options) if node.actor == seat else sum(options)

    out: list[Prob] = []
    for seat in (0, 1):
        total: Prob = 0
        for card in RANKS:
            reach: dict[str, Prob] = {}
            for (a, b, _), w in deals.items():
                if (a, b)[seat] == card:
                    other = (a, b)[1 - seat]
                    reach[other] = reach.get(other, 0) + w
            total += value(seat, card, (), "", reach)
        out.append(total)
    return (out[0], out[1])


def _pair(seat: int, card: str, other: str) -> tuple[str, str]:
    return (card, other) if seat == 0 else (other, card)


def exploitability(strategy: Strategy, *, invalid: Outcome) -> Prob:
    """Exploitability of `strategy` in Leduc, in chips per hand, as NashConv / 2 = sum over
    seats of (best-response value - self-play value) / 2 (Lanctot et al. 2017; OpenSpiel's
    exploitability), the strategy playing both seats. 0 exactly at a Nash equilibrium; an
    invalid move ends the hand with `invalid = (penalty, opponent_reward)` chips for the
    offender and the other player, which need not sum to 0 (see games/kuhn.py's
    `exploitability`). Fractions in, Fractions out; floats in, floats out."""
    best = best_response_values(strategy, invalid=invalid)
    own = self_play_values(strategy, invalid=invalid)
    return (best[0] - own[0] + best[1] - own[1]) / 2
