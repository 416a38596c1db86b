"""Kuhn Poker is exact: Nash value -1/18 for the first actor, chips right for every sequence."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from games.kuhn import RANKS, KuhnNashPolicy, KuhnPokerGame, legal_moves, settle
from spiral_games.types import Observation

TERMINAL = [
    ("check", "check"),
    ("check", "bet", "call"),
    ("check", "bet", "fold"),
    ("bet", "call"),
    ("bet", "fold"),
]


def expected_first_actor_delta(cards, history):
    """Hand-written chip accounting, independent of games.kuhn.settle."""
    first_wins = RANKS[cards[0]] > RANKS[cards[1]]
    showdown = {("check", "check"): 1, ("check", "bet", "call"): 2, ("bet", "call"): 2}
    if tuple(history) in showdown:
        return showdown[tuple(history)] * (1 if first_wins else -1)
    return {("check", "bet", "fold"): -1, ("bet", "fold"): 1}[tuple(history)]


def nash_value(alpha: Fraction) -> Fraction:
    """Exact expected chips of the first actor when both play the alpha-Nash strategy."""
    policy = KuhnNashPolicy(alpha=float(alpha))
    assert policy.alpha == alpha
    total = Fraction(0)
    deals = list(itertools.permutations(RANKS, 2))
    for cards in deals:

        def value(history: tuple[str, ...], cards: tuple[str, str] = cards) -> Fraction:
            result = settle(cards, history)
            if result is not None:
                return Fraction(result[0])
            p = policy.bet_or_call_probability(cards[len(history) % 2], history)
            facing_bet = history[-1:] == ("bet",)
            aggressive, passive = ("call", "fold") if facing_bet else ("bet", "check")
            assert {aggressive, passive} == set(legal_moves(history))
            return p * value((*history, aggressive)) + (1 - p) * value((*history, passive))

        total += value(())
    return total / len(deals)


@pytest.mark.parametrize("alpha", [Fraction(0), Fraction(1, 6), Fraction(1, 3)])
def test_nash_first_player_value_is_minus_one_eighteenth(alpha):
    assert nash_value(alpha) == Fraction(-1, 18)


@pytest.mark.parametrize("history", TERMINAL)
def test_settle_matches_hand_accounting_for_every_sequence(history):
    for cards in itertools.permutations(RANKS, 2):
        first, second = settle(cards, history)
        assert first == expected_first_actor_delta(cards, history)
        assert first + second == 0
    assert settle(("K", "J"), history[:-1]) is None


@pytest.mark.parametrize("history", TERMINAL)
@pytest.mark.parametrize("reward", ["chips", "win_loss"])
def test_env_moves_chips_for_every_sequence_and_alternates_first_player(history, reward):
    for seed in range(30):
        game = KuhnPokerGame(num_rounds=2, reward=reward)
        game.reset(seed)
        for rnd, first in ((1, 0), (2, 1)):
            gs = game.raw.state.game_state
            assert gs["round"] == rnd and game.current_role == first
            cards = (gs["cards"][first], gs["cards"][1 - first])
            before = dict(gs["chips"])
            for move in history:
                game.observation(game.current_role)
                assert game.step(f"[{move}]").valid
            delta = expected_first_actor_delta(cards, history)
            assert gs["chips"][first] - before[first] == delta
            assert gs["chips"][1 - first] - before[1 - first] == -delta
        assert game.done
        chips = gs["chips"]
        want = (
            (0.0, 0.0)
            if chips[0] == chips[1]
            else ((1.0, -1.0) if chips[0] > chips[1] else (-1.0, 1.0))
        )
        if reward == "chips":  # the chips won over both rounds, / 2
            want = (chips[0] / 2, chips[1] / 2)
        assert game.returns() == want


def test_illegal_kuhn_moves_are_rejected_without_changing_state():
    game = KuhnPokerGame(num_rounds=1)
    game.reset(0)
    game.observation(0)
    assert not game.step("[call]").valid  # nothing to call yet
    assert game.current_role == 0 and game.raw.state.game_state["history"] == []
    assert game.step("[bet]").valid
    game.observation(1)
    assert not game.step("[check]").valid  # facing a bet
    assert game.step("[fold]").valid and game.done


def test_nash_self_play_in_the_env_approaches_the_game_value():
    policy = KuhnNashPolicy(alpha=0.0, seed=0)
    first_actor_chips = []
    for seed in range(400):
        game = KuhnPokerGame(num_rounds=5)
        game.reset(seed)
        while not game.done:
            role = game.current_role
            obs = Observation("kuhn", role, game.observation(role), None, game.policy_state(role))
            action = game.parse_action(policy.act([obs])[0].text, role).action
            gs = game.raw.state.game_state
            first, chips = gs["first"], dict(gs["chips"])
            rnd = gs["round"]
            assert game.step(action).valid
            if gs["round"] != rnd or game.done:
                first_actor_chips.append(gs["chips"][first] - chips[first])
    mean = sum(first_actor_chips) / len(first_actor_chips)
    assert len(first_actor_chips) == 2000
    assert abs(mean - (-1 / 18)) < 0.09  # about 3 standard errors at 2000 rounds
