"""Evaluation planning and metrics with scripted players (the model seat is a real policy)."""

from __future__ import annotations

import pytest

from spiral_games.config.compose import compose_run_config
from spiral_games.play.loop import play_games
from spiral_games.play.registry import build_opponent, build_rules
from spiral_games.play.rollout import evaluation_jobs
from spiral_games.run.metrics import eval_metrics

from ..conftest import REPO


def test_per_opponent_counts_and_the_first_seat_of_a_worker():
    cfg = compose_run_config(REPO / "conf", ["+games=[tictactoe]"])
    rules = {n: build_rules(n, g) for n, g in cfg.games.items()}
    opponents = {
        ("tictactoe", o): build_opponent("tictactoe", cfg.games["tictactoe"], o, seed=1)
        for o in ("random", "expert")
    }
    learner = build_opponent("tictactoe", cfg.games["tictactoe"], "random", seed=2)
    jobs = evaluation_jobs(rules, opponents, {"random": 3, "expert": 1}, 0, learner, 0, 1)
    assert [j.opponent for j in jobs] == ["expert", "random", "random", "random"]
    assert [j.trained_roles for j in jobs] == [(1,), (1,), (0,), (1,)]  # from seat 1 on
    assert evaluation_jobs(rules, opponents, {"random": 2}, 0, learner)[0].opponent == "random"


def test_seats_alternate_and_every_pair_is_played():
    cfg = compose_run_config(REPO / "conf", ["+games=[tictactoe,nim]"])
    rules = {n: build_rules(n, g) for n, g in cfg.games.items()}
    opponents = {
        (n, o): build_opponent(n, g, o, seed=1)
        for n, g in cfg.games.items()
        for o in ("random", "expert")
    }
    learner = build_opponent("tictactoe", cfg.games["tictactoe"], "expert", seed=2)
    nim_learner = build_opponent("nim", cfg.games["nim"], "expert", seed=2)
    jobs = evaluation_jobs(rules, opponents, 4, seed=0, learner=learner)
    jobs = [
        j
        if j.rules.name == "tictactoe"
        else type(j)(
            j.rules,
            j.seed,
            tuple(nim_learner if p is learner else p for p in j.seats),
            j.trained_roles,
            j.version,
            j.opponent,
        )
        for j in jobs
    ]
    assert [j.trained_roles[0] for j in jobs[:4]] == [0, 1, 0, 1]
    episodes = play_games(jobs)
    metrics = eval_metrics(episodes)
    for game in ("tictactoe", "nim"):
        for opponent in ("random", "expert"):
            prefix = f"eval/{game}/{opponent}"
            rates = [metrics[f"{prefix}/{k}_rate"] for k in ("win", "draw", "loss")]
            assert sum(rates) == pytest.approx(1.0)
            assert metrics[f"{prefix}/invalid_rate"] == 0.0
    assert metrics["eval/tictactoe/random/loss_rate"] == 0.0  # minimax never loses
    assert metrics["eval/tictactoe/expert/draw_rate"] == 1.0  # perfect vs perfect draws
    # Nim from 3-4-5: the first mover wins with perfect play, so the expert wins exactly its
    # seat-0 games against the expert, and all of its games against random in seat 0.
    assert metrics["eval/nim/expert/seat0/win_rate"] == 1.0
    assert metrics["eval/nim/expert/seat1/win_rate"] == 0.0
