"""Kuhn's reward: chips won / 2 by default (Kuhn's own payoffs), SPIRAL's win/loss one override
away, and the composed configs that choose each."""

from __future__ import annotations

import dataclasses

import pytest

from games.kuhn import KuhnPokerGame
from spiral_games.config.compose import compose_run_config
from spiral_games.errors import ConfigError
from spiral_games.play.loop import replayed
from spiral_games.play.registry import build_rules

from ..conftest import REPO


def kuhn_rules(**env):
    cfg = compose_run_config(REPO / "conf", ["+games=[kuhn]"]).games["kuhn"]
    cfg = dataclasses.replace(cfg, env={**cfg.env, **env})
    return build_rules("kuhn", cfg)


def seed_dealing(rules, first_card, second_card):
    """A seed whose deal gives the round's first actor `first_card`, the second `second_card`."""
    for seed in range(500):
        cards = replayed(rules, seed, []).env.raw.state.game_state["cards"]
        if (cards[0], cards[1]) == (first_card, second_card):
            return seed
    raise AssertionError("no such deal in 500 seeds")


@pytest.mark.parametrize(
    ("line", "first_card", "second_card", "chips"),
    [
        (["[bet]", "[call]"], "K", "J", 2),  # a called bet: 2 chips move
        (["[check]", "[check]"], "Q", "K", -1),  # showdown of the antes
        (["[bet]", "[fold]"], "J", "K", 1),  # a bluff that works
        (["[check]", "[bet]", "[call]"], "J", "Q", -2),
    ],
)
def test_chips_reward_is_the_chips_won_over_two_and_zero_sum(line, first_card, second_card, chips):
    rules = kuhn_rules()
    seed = seed_dealing(rules, first_card, second_card)
    episode = replayed(rules, seed, line).episode()
    assert episode.returns == (chips / 2, -chips / 2)
    win_loss = replayed(kuhn_rules(reward="win_loss"), seed, line).episode()
    assert win_loss.returns == ((1.0, -1.0) if chips > 0 else (-1.0, 1.0))


def test_the_card_run_uses_chips_and_spirals_recipe_keeps_win_loss_over_five_hands():
    card = compose_run_config(REPO / "conf", ["+games=[kuhn,tictactoe]"])
    assert card.games["kuhn"].env["reward"] == "chips"
    assert card.games["kuhn"].env["num_rounds"] == 1
    spiral = compose_run_config(REPO / "conf", ["experiment=spiral_qwen3_4b"])
    assert spiral.games["kuhn"].env["reward"] == "win_loss"
    assert spiral.games["kuhn"].env["num_rounds"] == 5
    five_hands = build_rules("kuhn", spiral.games["kuhn"]).make_env()
    assert isinstance(five_hands, KuhnPokerGame) and five_hands.chips_per_reward == 1.0


def test_an_unknown_reward_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"games.kuhn.env.reward='pot'.*chips.*win_loss"):
        KuhnPokerGame(reward="pot")
