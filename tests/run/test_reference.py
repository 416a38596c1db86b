"""Reference lines: the random and expert players measured in the model's place, on the same
games, seeds, seats and analyses, through the code path a run uses."""

from __future__ import annotations

import pytest

from spiral_games.errors import ConfigError
from spiral_games.play.rollout import evaluation_jobs, evaluation_shares
from spiral_games.run.reference import reference_lines

from ..tiny_run import tiny_config

GAMES = {"random": 6, "expert": 2}


@pytest.fixture(scope="module")
def lines():
    return reference_lines(tiny_config("eval.points=3", games=["kuhn", "tictactoe"]))


def test_reference_players_play_the_models_games_seeds_and_seats(lines):
    for share in evaluation_shares(GAMES, workers=2, seed=11):
        model = evaluation_jobs(
            lines.rules,
            lines.opponents,
            share.games,
            share.seed,
            object(),
            first_seat=share.first_seat,
        )
        for name in ("random", "expert"):
            jobs = lines.jobs(name, share)
            assert [(j.rules.name, j.seed, j.trained_roles, j.opponent) for j in jobs] == [
                (j.rules.name, j.seed, j.trained_roles, j.opponent) for j in model
            ]
            for job in jobs:  # the player sits where the model sat, the opponent stays
                seat = job.trained_roles[0]
                assert job.seats[seat] is lines.players[(job.rules.name, name)]
                assert job.seats[1 - seat] is lines.opponents[(job.rules.name, job.opponent)]


def test_reference_metrics_carry_the_exact_kuhn_values_and_the_games(lines):
    shares = evaluation_shares(GAMES, workers=2, seed=11)
    out = lines.measure(shares, seed=11)
    # the same analysis code path the run's model is measured by, exact for scripted players
    assert out["ref/random/kuhn/exploitability"] == pytest.approx(11 / 24, abs=1e-12)
    assert out["ref/random/kuhn/exploitability_se"] == 0.0
    assert out["ref/expert/kuhn/exploitability"] == pytest.approx(0.0, abs=1e-12)
    for player in ("random", "expert"):
        for game in ("kuhn", "tictactoe"):
            assert out[f"ref/{player}/{game}/random/games"] == GAMES["random"]
            assert out[f"ref/{player}/{game}/expert/games"] == GAMES["expert"]
            assert out[f"ref/{player}/{game}/random/invalid_rate"] == 0.0
        assert 0 <= out[f"ref/{player}/tictactoe/optimal_move_rate_fixed"] <= 1
    assert out["ref/expert/tictactoe/random/loss_rate"] == 0.0  # minimax never loses
    assert out["ref/expert/tictactoe/expert/draw_rate"] == 1.0
    assert out["ref/expert/tictactoe/optimal_move_rate_fixed"] == 1.0
    assert out == lines.measure(shares, seed=11)  # reseeded: the same lines every time


def test_a_reference_no_game_has_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"eval.reference names 'nobody'.*eval.reference=\[\]"):
        reference_lines(tiny_config("eval.points=3", "eval.reference=[nobody]"))
    assert reference_lines(tiny_config("eval.points=3", "eval.reference=[]")) is None
    assert reference_lines(tiny_config("eval.points=0")) is None
