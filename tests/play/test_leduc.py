"""Leduc Hold'em through the GameEnv interface: hand-checked payoffs of scripted hands, the raise
cap, legal moves and turn order, what each seat is shown, the deal, play through the game loop
with the random and expert players, and the Hydra config."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from games.leduc import LeducNashPolicy, LeducPokerGame, nash_strategy
from games.leduc_analysis import LeducExploitability
from games.leduc_tree import INFO_SETS, chance, contributions, legal_moves, self_play_values
from spiral_games.config.compose import compose_run_config
from spiral_games.play.loop import GameJob, play_games
from spiral_games.play.policy import RandomPolicy
from spiral_games.play.registry import build_analysis, build_opponent, build_rules
from spiral_games.types import PolicyOutput

from ..conftest import REPO


def hand(cards: str, public: str, moves: str) -> LeducPokerGame:
    """A hand dealt `cards` (player 0's, player 1's) and `public`, played along `moves`."""
    env = LeducPokerGame()
    env.reset(0)
    env.cards, env.public = (cards[0], cards[1]), public
    for move in moves.split():
        assert env.step(f"[{move}]").valid, (move, env.history)
    return env


# (cards, public, moves, chips won by player 0, chips each put in); player 0 acts first in
# both rounds, bets and raises are 2 chips in round 1 and 4 in round 2
HANDS = [
    ("KQ", "J", "check check check check", 1, (1, 1)),  # K beats Q for the antes
    ("JK", "J", "check check check check", 1, (1, 1)),  # J pairs the public J, beats K
    ("QJ", "K", "check bet call check check", 3, (3, 3)),  # 1 + 2
    ("KJ", "Q", "check bet raise call bet raise call", 13, (13, 13)),  # 1 + 2 + 2, + 4 + 4
    ("QQ", "K", "bet raise call bet raise call", 0, (13, 13)),  # equal ranks split the pot
    ("QK", "J", "bet raise fold", -3, (3, 5)),  # player 0 folds its 1 + 2
    ("JQ", "K", "check check bet fold", 1, (5, 1)),  # player 1 folds its ante in round 2
    ("KQ", "K", "bet call check bet raise fold", 7, (11, 7)),  # 1 + 2 + 4, folded to a raise
    ("JK", "Q", "bet call check bet call", -7, (7, 7)),  # 1 + 2 + 4 to the higher card
]


@pytest.mark.parametrize(("cards", "public", "moves", "won", "spent"), HANDS)
def test_scripted_hands_pay_the_chips_counted_by_hand(cards, public, moves, won, spent):
    env = hand(cards, public, moves)
    assert env.done and env.legal_actions(0) == []
    assert env.chips() == (won, -won)
    assert env.returns() == (won / 13, -won / 13)  # chips / 13: in [-1, 1], zero-sum
    assert contributions(env.history) == spent


def test_outcome_reasons_name_the_fold_or_the_showdown():
    assert hand("QK", "J", "bet raise fold").outcome_reason == (
        "Player 0 folded; Player 1 wins 3 chips."
    )
    assert hand("JK", "J", "check check check check").outcome_reason == (
        "Showdown (Player 0 J, Player 1 K, public card J): Player 0 wins 1 chips."
    )
    assert "split" in hand("QQ", "K", "check check check check").outcome_reason


def test_a_round_allows_a_bet_and_one_raise():
    env = hand("KQ", "J", "")
    assert env.legal_actions(0) == ["[check]", "[bet]"]
    assert env.step("[bet]").valid
    assert env.legal_actions(1) == ["[call]", "[raise]", "[fold]"]
    assert env.step("[raise]").valid
    assert env.legal_actions(0) == ["[call]", "[fold]"]  # capped: no re-raise
    refused = env.step("[raise]")
    assert not refused.valid and "[call], [fold]" in refused.reason
    assert env.history == ["bet", "raise"] and env.current_role == 0  # nothing changed
    assert env.step("[call]").valid
    assert env.legal_actions(0) == ["[check]", "[bet]"]  # round 2: a fresh cap
    for move in ("check", "bet", "raise"):
        assert env.step(f"[{move}]").valid
    assert env.legal_actions(0) == ["[call]", "[fold]"]


def test_moves_that_do_not_fit_the_betting_are_refused():
    env = hand("KQ", "J", "")
    for wrong in ("[call]", "[raise]", "[fold]", "check", "[allin]", ""):
        assert not env.step(wrong).valid, wrong
    assert env.step("I will \\boxed{[ Check ]}").valid  # the last bracketed move, any case
    assert env.step("[bet]").valid
    assert not env.step("[check]").valid and not env.step("[bet]").valid
    assert env.history == ["check", "bet"]


def test_player_0_opens_both_rounds_whoever_closed_the_first():
    for moves in ("check check", "bet call", "check bet call", "check bet raise call"):
        env = hand("KQ", "J", moves)
        assert env.current_role == 0 and env.legal_actions(0) == ["[check]", "[bet]"], moves
    assert hand("KQ", "J", "check").current_role == 1
    assert hand("KQ", "J", "check bet").current_role == 0
    assert hand("KQ", "J", "check bet raise").current_role == 1


def test_each_seat_sees_its_own_card_and_the_public_card_after_round_1():
    env = hand("KQ", "J", "check")
    text = env.observation(1)
    assert "Your card: Q." in text and "Public card: not revealed yet." in text
    assert "K" not in text.split("Your card")[1].split("Round 1")[0]  # not the other card
    assert "Round 1 betting: Player 0 checked." in text
    assert text.endswith("Your available actions: [check], [bet]")
    assert env.policy_state(1) == {"card": "Q", "public": "", "history": ("check",)}
    env.step("[check]")
    state = env.current_state(0)
    assert "Your card: K. Public card: J." in state and "Round 2 betting: none." in state
    assert "Pot: 2 chips (you put in 1, your opponent 1)." in state
    assert env.policy_state(0)["public"] == "J"
    env.step("[bet]")
    assert "Round 2 betting: Player 0 bet." in env.current_state(1)
    assert "you put in 1, your opponent 5" in env.current_state(1)


def test_a_seed_deals_the_same_cards_and_deals_follow_the_deck():
    env = LeducPokerGame()
    seen = Counter()
    n = 6000
    for seed in range(n):
        env.reset(seed)
        seen[(*env.cards, env.public)] += 1
    env.reset(17)
    first = (env.cards, env.public)
    env.reset(17)
    assert (env.cards, env.public) == first
    expected = chance(False)  # e.g. (K, K, public) has 2/6 * 1/5 = 1/15
    assert set(seen) == set(expected) and len(expected) == 24
    for deal, p in expected.items():
        assert abs(seen[deal] / n - p) < 4 * math.sqrt(p * (1 - p) / n), deal


def test_random_players_finish_every_hand_with_zero_sum_returns():
    rules = leduc_rules()
    jobs = [GameJob(rules, s, (RandomPolicy(s), RandomPolicy(s + 1))) for s in range(300)]
    episodes = play_games(jobs)
    for episode in episodes:
        assert episode.invalid_role is None and all(t.valid for t in episode.turns)
        assert 2 <= len(episode.turns) <= 8
        assert episode.returns[0] == -episode.returns[1] and abs(episode.returns[0]) <= 1


def test_an_invalid_reply_ends_the_hand_with_the_configured_penalty():
    rules = leduc_rules()

    class Gibberish:
        def act(self, observations):
            return [PolicyOutput(text="no idea") for _ in observations]

    (episode,) = play_games([GameJob(rules, 0, (Gibberish(), RandomPolicy(0)))])
    assert episode.invalid_role == 0 and episode.returns == (-1.5, 0.5)


def test_the_expert_plays_its_equilibrium_strategy_in_play():
    """Its mean chips against uniform random play, over 3000 hands in each seat, lie within 4
    standard errors of the exact value (the strategies' self-play value, each in its seat)."""
    rules = leduc_rules()
    uniform = {
        i: (*[1 / len(legal_moves(i.history))] * len(legal_moves(i.history)), 0.0)
        for i in INFO_SETS
    }
    for seat in (0, 1):
        profile = {i: nash_strategy()[i] if i.seat == seat else uniform[i] for i in INFO_SETS}
        exact = self_play_values(profile, invalid=(-19.5, 6.5))[seat]
        players = [RandomPolicy(seed=1), RandomPolicy(seed=1)]  # one of each, as evaluation
        players[seat] = LeducNashPolicy(seed=2)
        jobs = [GameJob(rules, s, (players[0], players[1])) for s in range(3000)]
        chips = [13 * e.returns[seat] for e in play_games(jobs)]
        mean = sum(chips) / len(chips)
        se = math.sqrt(sum((c - mean) ** 2 for c in chips) / (len(chips) - 1) / len(chips))
        assert 0.5 < exact < 1 and abs(mean - exact) < 4 * se, (seat, mean, exact, se)


def leduc_rules():
    return build_rules(
        "leduc", compose_run_config(REPO / "conf", ["+games=[leduc]"]).games["leduc"]
    )


def test_hydra_composes_leduc_with_its_opponents_and_analysis():
    cfg = compose_run_config(REPO / "conf", ["+games=[leduc,kuhn]"])
    game = cfg.games["leduc"]
    assert set(cfg.games) == {"leduc", "kuhn"}
    assert isinstance(build_rules("leduc", game).make_env(), LeducPokerGame)
    assert isinstance(build_opponent("leduc", game, "expert", seed=3), LeducNashPolicy)
    assert isinstance(build_opponent("leduc", game, "random", seed=3), RandomPolicy)
    analysis = build_analysis("leduc", game, "exploitability")
    assert isinstance(analysis, LeducExploitability) and analysis.samples == 4
    override = "games.leduc.analyses.exploitability.samples=2"
    cfg = compose_run_config(REPO / "conf", ["+games=[leduc]", override])
    assert build_analysis("leduc", cfg.games["leduc"], "exploitability").samples == 2
