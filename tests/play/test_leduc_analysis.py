"""Measuring a policy's Leduc exploitability: the observations play gives, exact values for
players that state their probabilities, sampled estimates, invalid replies, the run's reference
lines, and the tiny random model through a rollout worker's analyses."""

from __future__ import annotations

import dataclasses
import math

import pytest

from games.leduc import LeducNashPolicy
from games.leduc_analysis import (
    LeducExploitability,
    estimate_strategy,
    invalid_outcome,
    observations,
)
from games.leduc_tree import INFO_SETS, legal_moves
from spiral_games.config.compose import compose_run_config
from spiral_games.config.schema import GameConfig
from spiral_games.errors import GameError
from spiral_games.play.loop import GameJob, play_games
from spiral_games.play.policy import RandomPolicy
from spiral_games.play.registry import build_rules
from spiral_games.types import PolicyOutput

from ..conftest import REPO
from ..tiny_run import tiny_config
from .recording import Recording

UNIFORM = 1709 / 720  # OpenSpiel's NashConv 4.7472... / 2 (test_leduc_exploitability)


@pytest.fixture(scope="module")
def rules():
    return build_rules(
        "leduc", compose_run_config(REPO / "conf", ["+games=[leduc]"]).games["leduc"]
    )


class Saying:
    """Answers every observation with the same text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def act(self, observations):
        return [PolicyOutput(text=self.text) for _ in observations]


def key(observation):
    state = observation.state
    return state["card"], state["public"], state["history"]


def test_observations_are_the_ones_play_gives_in_one_batch(rules):
    asked = Recording(RandomPolicy(seed=0))
    estimate_strategy(asked, rules, samples=2, seed=0)
    assert len(asked.batches) == 1 and len(asked.batches[0]) == 2 * len(INFO_SETS)
    built = {key(o): o for o in asked.batches[0]}
    assert set(built) == {(i.card, i.public, i.history) for i in INFO_SETS}
    assert {key(o): o for _, o in observations(rules, seed=0).values()} == built

    played = Recording(RandomPolicy(seed=1))
    play_games([GameJob(rules, seed, (played, played)) for seed in range(300)])
    seen = [o for batch in played.batches for o in batch]
    assert len({key(o) for o in seen}) > 150  # most of them (the deep ones are rare)
    for observation in seen:
        assert observation == built[key(observation)]  # text, legal actions, state, position


def test_scripted_players_are_measured_exactly_from_their_stated_probabilities(rules):
    random_player = LeducExploitability().measure(RandomPolicy(seed=0), rules, 0)
    assert random_player["exploitability"] == pytest.approx(UNIFORM, abs=1e-12)
    assert random_player["exploitability_se"] == 0.0 and random_player["invalid_share"] == 0.0
    assert random_player["best_response_first"] == pytest.approx(167 / 80, abs=1e-12)
    expert = LeducExploitability().measure(LeducNashPolicy(seed=0), rules, 3)
    assert 0 <= expert["exploitability"] < 1e-6 and expert["exploitability_se"] == 0.0
    assert expert["best_response_first"] == pytest.approx(-0.085606, abs=2e-6)
    assert expert["invalid_share"] == pytest.approx(0.0, abs=1e-9)


def test_random_policy_sampled_lands_within_a_few_standard_errors(rules):
    """16 replies at each of the 288 information sets; each set's frequencies are noisy, which
    biases the estimate up (the noise is exploitable too), by about 0.1 chip here."""
    result = LeducExploitability(samples=16, exact=False).measure(RandomPolicy(seed=0), rules, 0)
    assert result["invalid_share"] == 0 and 0 < result["exploitability_se"] < 0.2
    assert abs(result["exploitability"] - UNIFORM) < 4 * result["exploitability_se"]


def test_gibberish_is_all_invalid_with_the_configured_outcome_in_chips(rules):
    """Every reply invalid: (r - p) / 2 with p = -1.5 * 13 and r = 0.5 * 13 chips."""
    result = LeducExploitability(samples=2).measure(Saying("no idea, sorry"), rules, 0)
    assert result == {
        "exploitability": 13.0,
        "exploitability_se": 0.0,
        "best_response_first": 6.5,
        "best_response_second": 6.5,
        "invalid_share": 1.0,
    }


def test_replies_are_parsed_with_the_games_action_format(rules):
    lenient = estimate_strategy(
        Saying("I will call."), dataclasses.replace(rules, action_format="lenient"), 2, 0
    )
    for info in INFO_SETS:  # a named [call] is played where it is legal, invalid elsewhere
        moves = legal_moves(info.history)
        expected = [2 * (m == "call") for m in moves] + [0 if "call" in moves else 2]
        assert lenient[info] == tuple(expected)
    boxed = estimate_strategy(
        Saying("I will call."), dataclasses.replace(rules, action_format="boxed"), 2, 0
    )
    assert all(counts[-1] == 2 for counts in boxed.values())


def test_invalid_outcome_counts_rewards_in_chips(rules):
    assert invalid_outcome(rules) == (-19.5, 6.5)
    retry = dataclasses.replace(
        rules, config=dataclasses.replace(rules.config, invalid_move="retry")
    )
    assert invalid_outcome(retry) == (-13.0, 13.0)


def test_another_game_is_a_clear_error():
    kuhn = build_rules(
        "kuhn", GameConfig(env={"_target_": "games.kuhn.KuhnPokerGame"}, action_format="boxed")
    )
    with pytest.raises(GameError, match="not Leduc"):
        LeducExploitability().measure(RandomPolicy(0), kuhn, seed=0)


def test_reference_lines_carry_the_exact_values_through_the_runs_code_path():
    from spiral_games.play.rollout import evaluation_shares
    from spiral_games.run.reference import reference_lines

    lines = reference_lines(tiny_config("eval.points=3", games=["leduc"]))
    out = lines.measure(evaluation_shares({"random": 4, "expert": 2}, workers=1, seed=5), seed=5)
    assert out["ref/random/leduc/exploitability"] == pytest.approx(UNIFORM, abs=1e-12)
    assert out["ref/expert/leduc/exploitability"] == pytest.approx(0.0, abs=1e-6)
    assert out["ref/random/leduc/random/games"] == 4 and out["ref/expert/leduc/expert/games"] == 2


@pytest.mark.parametrize(
    "action_format",
    ["choice", pytest.param("boxed", marks=pytest.mark.slow)],  # boxed: ~45 s
)
def test_the_tiny_model_is_measured_through_a_rollout_workers_analyses(tiny, action_format):
    """A rollout worker (transformers engine, the tiny random model) runs conf/games/leduc.yaml's
    analysis on its eval policy: exact from its probabilities of the masked choice (SE 0, no
    invalid reply), or sampled from 288 free replies, most of them invalid."""
    from spiral_games.actors.rollout_worker import RolloutWorker, WorkerConfig

    cfg = tiny_config(
        f"games.leduc.action_format={action_format}",
        "games.leduc.analyses.exploitability.samples=1",
        "rollout.max_tokens=8",
        games=["leduc"],
    )
    worker = RolloutWorker(WorkerConfig.from_run(cfg, tiny.path))
    try:
        out = worker.analyse(seed=0)
    finally:
        worker.close()
    value, se = out["eval/leduc/exploitability"], out["eval/leduc/exploitability_se"]
    assert math.isfinite(value) and 0 <= value <= 13 and math.isfinite(se)
    if action_format == "choice":
        assert se == 0.0 and out["eval/leduc/invalid_share"] == pytest.approx(0.0, abs=1e-6)
        assert value > 0.1  # a random network is far from Nash
    else:
        assert 0 <= out["eval/leduc/invalid_share"] <= 1
