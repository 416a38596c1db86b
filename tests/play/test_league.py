"""The opponent league's pure core: membership, PFSP sampling, ratings, and exact state."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from spiral_games.config.schema import LeagueConfig
from spiral_games.errors import ConfigError
from spiral_games.play.league import CURRENT, League, LeagueDraw, member_name
from spiral_games.types import Episode

REPO = Path(__file__).resolve().parents[2]


def game(opponent: str, seat: int, mine: float, theirs: float) -> Episode:
    """A finished league game: the current policy in `seat` scored `mine`, `opponent` `theirs`."""
    returns = (mine, theirs) if seat == 0 else (theirs, mine)
    return Episode("kuhn", 0, (), returns, "end", trained_roles=(seat,), opponent=opponent)


def self_play(mine: float) -> Episode:
    return Episode("kuhn", 0, (), (mine, -mine), "end", trained_roles=(0, 1))


def test_snapshots_join_every_k_steps_and_the_oldest_leaves_first():
    league = League(LeagueConfig(every=2, size=2, fixed=["random"]))
    assert [league.snapshot_due(d) for d in range(1, 7)] == [False, True, False, True, False, True]
    assert league.add_snapshot(2) == []
    assert league.add_snapshot(4) == []
    evicted = league.add_snapshot(6)
    assert [m.name for m in evicted] == [member_name(2)]
    assert [m.name for m in league.members] == ["random", member_name(4), member_name(6)]
    assert set(league.ratings) == {CURRENT, "random", member_name(4), member_name(6)}
    assert league.draw().members == ("random", member_name(4), member_name(6))


def test_size_zero_keeps_only_fixed_opponents():
    league = League(LeagueConfig(size=0, fixed=["random", "expert"]))
    assert not league.snapshot_due(2)
    assert [m.name for m in league.members] == ["random", "expert"]


def test_a_snapshot_starts_from_the_current_rating():
    league = League(LeagueConfig(fixed=["random"]))
    league.record([game("random", 0, 1.0, -1.0) for _ in range(5)])
    league.add_snapshot(2)
    assert league.ratings[member_name(2)] == league.ratings[CURRENT]
    assert league.ratings[CURRENT][0] > league.ratings["random"][0]


def test_results_are_counted_from_the_members_side_in_either_seat():
    league = League(LeagueConfig(fixed=["random"], decay=1.0))
    league.record(
        [
            game("random", 0, -1.0, 1.0),  # member wins (current in seat 0)
            game("random", 1, -1.0, 1.0),  # member wins (current in seat 1)
            game("random", 1, 0.0, 0.0),  # draw
            game("random", 0, 2.0, -2.0),  # member loses
            self_play(1.0),  # not a league game
            game("gone", 0, 1.0, -1.0),  # a member evicted since the draw: ignored
        ]
    )
    rec = league.records["random"]
    assert (rec.wins, rec.draws, rec.losses) == (2, 1, 1)
    assert rec.beats_current() == pytest.approx((2 + 0.5 + 1) / (4 + 2))
    assert league.games_rated == 4


def test_winning_raises_a_rating_and_losing_lowers_it():
    league = League(LeagueConfig(fixed=["random"]))
    start = league.ratings[CURRENT]
    league.record([game("random", 0, 1.0, -1.0)])
    assert league.ratings[CURRENT][0] > start[0] > league.ratings["random"][0]
    assert league.ratings[CURRENT][1] < start[1]  # less uncertain after a game
    won = league.ratings[CURRENT][0]
    league.record([game("random", 1, -1.0, 1.0)])
    assert league.ratings[CURRENT][0] < won


def test_old_results_decay_each_step():
    league = League(LeagueConfig(fixed=["random"], decay=0.5))
    league.record([game("random", 0, -1.0, 1.0) for _ in range(4)])
    league.record([])
    league.record([])
    assert league.records["random"].wins == pytest.approx(1.0)


def test_pfsp_prefers_the_members_that_beat_the_current_policy():
    league = League(LeagueConfig(fixed=["random"], size=3, decay=1.0, pfsp_power=2.0))
    league.add_snapshot(2)
    league.add_snapshot(4)
    league.record(
        [game(member_name(2), 0, -1.0, 1.0) for _ in range(6)]  # step 2 beats current
        + [game(member_name(4), 0, 1.0, -1.0) for _ in range(6)]  # step 4 loses
    )
    draw = league.draw()
    weights = dict(zip(draw.members, draw.weights, strict=True))
    assert weights[member_name(2)] == pytest.approx((7 / 8) ** 2)
    assert weights[member_name(4)] == pytest.approx((1 / 8) ** 2)
    assert weights["random"] == pytest.approx(0.25)  # no games yet: 1/2 squared
    uniform = League(LeagueConfig(fixed=["random"], sampling="uniform"))
    assert uniform.draw().weights == (1.0,)


def test_a_draw_samples_self_play_and_members_at_their_probabilities():
    draw = LeagueDraw(0.25, ("a", "b"), (3.0, 1.0))
    probs = draw.probabilities()
    assert probs == pytest.approx({CURRENT: 0.25, "a": 0.5625, "b": 0.1875})
    rng = random.Random(0)
    n = 20_000
    drawn = [draw.sample(rng) for _ in range(n)]
    for name, p in probs.items():
        share = sum((d or CURRENT) == name for d in drawn) / n
        assert abs(share - p) < 4 * (p * (1 - p) / n) ** 0.5, name
    assert LeagueDraw(0.5).sample(rng) is None  # an empty pool plays itself


def test_state_round_trips_through_json_and_continues_identically():
    cfg = LeagueConfig(fixed=["random"], size=2, decay=0.7)
    games = [game("random", k % 2, (-1.0) ** k, -((-1.0) ** k)) for k in range(7)]
    a = League(cfg)
    a.record(games)
    a.add_snapshot(2)
    a.record([game(member_name(2), 1, -1.0, 1.0), game("random", 0, 0.0, 0.0)])
    b = League(cfg)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    more = [game(member_name(2), 0, 1.0, -1.0), game("random", 1, -1.0, 1.0)]
    a.record(more)
    b.record(more)
    a.add_snapshot(4)
    b.add_snapshot(4)
    assert a.state_dict() == b.state_dict()
    assert a.draw() == b.draw()
    assert a.metrics() == b.metrics()


def test_resuming_with_other_fixed_opponents_is_refused():
    a = League(LeagueConfig(fixed=["random"]))
    b = League(LeagueConfig(fixed=["random", "expert"]))
    with pytest.raises(ConfigError, match=r"league.fixed"):
        b.load_state_dict(a.state_dict())


def test_metrics_name_every_member():
    league = League(LeagueConfig(fixed=["random"]))
    league.add_snapshot(2)
    metrics = league.metrics()
    for name in (CURRENT, "random", member_name(2)):
        assert f"league/rating/{name}" in metrics
        assert f"league/draw/{name}" in metrics
    assert metrics["league/size"] == 2
    assert sum(v for k, v in metrics.items() if k.startswith("league/draw/")) == pytest.approx(1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"self_play": 1.0}, "league.self_play"),
        ({"every": 0}, "league.every"),
        ({"sampling": "elo"}, "league.sampling"),
        ({"decay": 0.0}, "league.decay"),
        ({"size": 0, "fixed": []}, "league empty"),
        ({"fixed": ["random", "random"]}, r"each fixed opponent once"),
        ({"fixed": ["current"]}, r"'current' or 'step_\*'"),
    ],
)
def test_bad_league_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        LeagueConfig(**overrides)


def test_the_run_config_composes_a_league_and_refuses_contradictions():
    from spiral_games.config.compose import compose_run_config

    conf = REPO / "conf"
    cfg = compose_run_config(conf, ["+games=[kuhn,tictactoe]", "rollout.opponents=league"])
    assert cfg.rollout.opponents == "league" and cfg.league.fixed == ["random"]
    # one setting chooses the training opponent: the old second one is refused, naming it
    with pytest.raises(ConfigError, match=r"rollout.opponent was merged into rollout.opponents"):
        compose_run_config(
            conf, ["+games=[kuhn]", "rollout.opponents=league", "rollout.opponent=random"]
        )
    with pytest.raises(ConfigError, match=r"league.fixed lists 'nobody'"):
        compose_run_config(
            conf, ["+games=[kuhn]", "rollout.opponents=league", "league.fixed=[nobody]"]
        )
    with pytest.raises(ConfigError, match=r"rollout.opponents"):
        compose_run_config(conf, ["+games=[kuhn]", "rollout.opponents=population"])


def test_league_jobs_are_seeded_and_train_only_the_current_policys_seat():
    from games.kuhn import KuhnNashPolicy
    from spiral_games.play.policy import RandomPolicy
    from spiral_games.play.registry import build_rules
    from spiral_games.play.rollout import plan_league_jobs

    cfg = compose_run_config_for(["+games=[kuhn,tictactoe]"])
    rules = {n: build_rules(n, g) for n, g in cfg.games.items()}
    weights = {n: 1.0 for n in rules}
    learner, snapshot, fixed = RandomPolicy(0), KuhnNashPolicy(), RandomPolicy(1)

    def opponent(game, member):
        return fixed if member == "random" else snapshot

    draw = LeagueDraw(0.3, ("random", "step_000002"), (1.0, 3.0))
    jobs = plan_league_jobs(rules, weights, 400, 7, learner, draw, opponent)
    again = plan_league_jobs(rules, weights, 400, 7, learner, draw, opponent)
    assert [(j.rules.name, j.seed, j.opponent, j.trained_roles) for j in jobs] == [
        (j.rules.name, j.seed, j.opponent, j.trained_roles) for j in again
    ]
    for job in jobs:
        if job.opponent == "":
            assert job.seats == (learner, learner) and job.trained_roles == (0, 1)
        else:
            (seat,) = job.trained_roles
            assert job.seats[seat] is learner
            assert job.seats[1 - seat] is opponent(job.rules.name, job.opponent)
    shares = {name: sum(j.opponent == name for j in jobs) / 400 for name in ("", "random")}
    assert abs(shares[""] - 0.3) < 4 * (0.3 * 0.7 / 400) ** 0.5
    assert abs(shares["random"] - 0.175) < 4 * (0.175 * 0.825 / 400) ** 0.5
    assert {j.trained_roles for j in jobs if j.opponent} == {(0,), (1,)}


def test_league_groups_cover_every_job_once_in_a_fixed_order():
    from spiral_games.play.loop import GameJob
    from spiral_games.play.rollout import league_groups

    names = ["", "step_000004", "random", "step_000002", "step_000004", "", "step_000002"]
    jobs = [GameJob(None, k, (None, None), opponent=n) for k, n in enumerate(names)]  # type: ignore[arg-type]
    groups = league_groups(jobs, {"step_000002", "step_000004", "step_000006"})
    assert groups == [("step_000002", [0, 2, 3, 5, 6]), ("step_000004", [1, 4])]
    assert league_groups(jobs[:3:2], {"step_000002"}) == [("", [0, 1])]  # no snapshot games


def compose_run_config_for(overrides):
    from spiral_games.config.compose import compose_run_config

    return compose_run_config(REPO / "conf", overrides)
