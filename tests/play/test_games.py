"""Games through the library's adapter path: termination, zero-sum, legality, determinism,
the invalid-move policies, transcripts and the library's independence from specific games."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest

from games.kuhn import PAST
from spiral_games.config.compose import compose_run_config
from spiral_games.config.schema import GameConfig
from spiral_games.errors import ConfigError
from spiral_games.play.loop import GameJob, GameSession, play_games
from spiral_games.play.policy import RandomPolicy
from spiral_games.play.registry import build_opponent, build_rules
from spiral_games.report.transcripts import read_transcripts, write_transcripts
from spiral_games.run.metrics import rollout_metrics
from spiral_games.types import GameEnd, PolicyOutput

from ..conftest import REPO

ALL_GAMES = ["kuhn", "tictactoe", "negotiation", "negotiation5", "nim", "leduc"]


@pytest.fixture(scope="module")
def games():
    cfg = compose_run_config(REPO / "conf", [f"+games=[{','.join(ALL_GAMES)}]"])
    return cfg.games


@pytest.mark.parametrize("name", ALL_GAMES)
def test_500_random_games_terminate_zero_sum_and_accept_every_legal_action(name, games):
    rules = build_rules(name, games[name])
    seats = (RandomPolicy(seed=1), RandomPolicy(seed=2))
    episodes = play_games([GameJob(rules, seed, seats) for seed in range(500)])
    assert len(episodes) == 500
    for ep in episodes:
        assert ep.invalid_role is None, ep.reason  # a listed legal action was rejected
        assert all(t.valid for t in ep.turns)
        assert sum(ep.returns) == 0
        # win/draw/loss; Kuhn's default reward is the chips won / 2: 1 or 2 chips each way,
        # Leduc's the chips won / 13: up to 13 chips each way
        allowed = {-1.0, -0.5, 0.5, 1.0} if name == "kuhn" else {-1.0, 0.0, 1.0}
        if name == "leduc":
            allowed = {chips / 13 for chips in range(-13, 14)}
        assert set(ep.returns) <= allowed
        assert ep.end is GameEnd.FINISHED, ep.reason
        assert {t.role for t in ep.turns} == {0, 1}


@pytest.mark.parametrize("name", ALL_GAMES)
def test_same_seed_gives_the_same_game(name, games):
    rules = build_rules(name, games[name])

    def transcripts():
        seats = (RandomPolicy(seed=3), RandomPolicy(seed=4))
        # Interleave with other seeds: concurrent games must not disturb each other's RNG.
        eps = play_games([GameJob(rules, seed, seats) for seed in (11, 12, 13)])
        return [json.dumps(e.to_json()) for e in eps]

    first, second = transcripts(), transcripts()
    assert first == second
    alone = play_games([GameJob(rules, 12, (RandomPolicy(3), RandomPolicy(4)))])[0]
    assert alone.to_json()["turns"][0]["prompt"] == json.loads(first[1])["turns"][0]["prompt"]


class Scripted:
    """Answers with fixed responses in order (the policy under test is the game loop)."""

    def __init__(self, responses):
        self.responses = list(responses)

    def act(self, observations):
        return [PolicyOutput(text=self.responses.pop(0)) for _ in observations]


def test_penalty_policy_ends_the_game_with_spiral_rewards(games):
    rules = build_rules("tictactoe", games["tictactoe"])
    session_eps = play_games(
        [GameJob(rules, 0, (Scripted(["\\boxed{[4]}"]), Scripted(["I refuse to box"])))]
    )
    ep = session_eps[0]
    assert ep.returns == (0.5, -1.5)
    assert ep.invalid_role == 1
    assert [t.valid for t in ep.turns] == [True, False]
    assert "no \\boxed" in ep.turns[-1].invalid_reason
    assert "invalid move" in ep.reason
    assert ep.end is GameEnd.INVALID_MOVE and ep.to_json()["end"] == "invalid_move"


def test_turn_limit_and_context_overflow_end_the_game_as_a_typed_draw(games):
    rules = build_rules("tictactoe", dataclasses.replace(games["tictactoe"], max_turns=2))
    seats = (RandomPolicy(seed=1), RandomPolicy(seed=2))
    capped = play_games([GameJob(rules, 0, seats)])[0]
    assert capped.end is GameEnd.TURN_LIMIT and capped.returns == (0.0, 0.0)
    assert len(capped.turns) == 2

    class Overflowing:
        def act(self, observations):
            return [PolicyOutput(text="", context_overflow=True) for _ in observations]

    full = play_games([GameJob(rules, 0, (Overflowing(), Overflowing()))])[0]
    assert full.end is GameEnd.CONTEXT_OVERFLOW and full.returns == (0.0, 0.0)
    counted = rollout_metrics([capped, full, capped])
    assert counted["rollout/context_overflow_draws"] == 1.0


def test_env_rejected_move_is_also_invalid(games):
    rules = build_rules("negotiation", games["negotiation"])
    bad_offer = "\\boxed{[Offer: 50 Wood -> 1 Gold]}"  # more Wood than the player owns
    ep = play_games([GameJob(rules, 0, (Scripted([bad_offer]), Scripted([])))])[0]
    assert ep.returns == (-1.5, 0.5)
    assert "do not have" in ep.turns[0].invalid_reason


def test_retry_policy_allows_one_retry_then_loses(games):
    cfg = GameConfig(**{**games["kuhn"].__dict__, "invalid_move": "retry"})
    rules = build_rules("kuhn", cfg)
    ep = play_games(
        [GameJob(rules, 0, (Scripted(["\\boxed{[raise]}", "\\boxed{[jump]}"]), Scripted([])))]
    )[0]
    assert ep.returns == (-1.0, 1.0)
    assert [t.valid for t in ep.turns] == [False, False]
    assert "try again" in ep.turns[1].observation

    ok = play_games(
        [
            GameJob(
                rules,
                0,
                (
                    Scripted(["\\boxed{[raise]}"] + ["\\boxed{[check]}"] * 9),
                    Scripted(["\\boxed{[check]}"] * 10),
                ),
            )
        ]
    )[0]
    assert ok.invalid_role is None and ok.turns[1].valid


def test_lenient_action_format_plays_a_named_move_and_still_penalises_nonsense(games):
    cfg = GameConfig(**{**games["kuhn"].__dict__, "action_format": "lenient"})
    rules = build_rules("kuhn", cfg)
    ep = play_games([GameJob(rules, 0, (Scripted(["I'll go with [bet]"]), Scripted(["umm"])))])[0]
    assert ep.turns[0].action == "[bet]" and ep.turns[0].valid and ep.turns[0].lenient
    assert not ep.turns[1].valid and ep.invalid_role == 1  # nothing named: still invalid
    assert ep.to_json()["turns"][0]["lenient"] is True

    boxed_wrong = play_games(
        [GameJob(rules, 0, (Scripted(["[bet] \\boxed{[raise]}"]), Scripted([])))]
    )
    assert boxed_wrong[0].turns[0].action is None  # a box is never second-guessed

    spiral = GameConfig(**{**games["kuhn"].__dict__, "action_format": "boxed"})
    strict = build_rules("kuhn", spiral)  # SPIRAL's format: boxed only
    ep = play_games([GameJob(strict, 0, (Scripted(["I'll go with [bet]"]), Scripted([])))])[0]
    assert ep.invalid_role == 0 and not ep.turns[0].lenient


def test_kuhn_observation_shows_card_and_legal_moves(games):
    session = GameSession(GameJob(build_rules("kuhn", games["kuhn"]), 5, (None, None)))
    obs = session.pending()
    assert obs.role == 0 and obs.legal_actions == ("[check]", "[bet]")
    assert f"Your card: {obs.state['card']}" in obs.text
    assert "Round 1/1" in obs.text


def test_position_view_is_the_present_state_without_the_history(games):
    for name in ("tictactoe", "kuhn"):
        rules = build_rules(name, games[name])
        for seed in range(20):
            session = GameSession(
                GameJob(rules, seed, (RandomPolicy(seed), RandomPolicy(seed + 1)))
            )
            while (obs := session.pending()) is not None:
                if name == "tictactoe":
                    cells = [c or str(i) for i, c in enumerate(obs.state["cells"])]
                    assert " | ".join(cells[3:6]) in obs.position
                    assert obs.position.count("---+---+---") == 2  # one board, not the history
                else:
                    assert f"Your card: {obs.state['card']}." in obs.position
                    assert "Round" not in obs.position  # one round: no match score to state
                    moves = obs.state["history"]
                    betting = obs.position.splitlines()[-1]
                    assert betting.startswith("Betting so far: ") and betting.endswith(".")
                    assert betting.count("Player ") == len(moves)
                    assert all(PAST[m] in betting for m in moves) and (moves or "none" in betting)
                policy = session.job.seats[obs.role]
                session.submit(obs, policy.act([obs])[0])
    nim = GameSession(GameJob(build_rules("nim", games["nim"]), 0, (None, None))).pending()
    assert nim.position is None  # a game without the view keeps its observation


def test_negotiation_chat_is_visible_to_the_opponent(games):
    rules = build_rules("negotiation", games["negotiation"])
    session = GameSession(GameJob(rules, 0, (None, None)))
    first = session.pending()
    session.submit(first, PolicyOutput("\\boxed{Wood is cheap for me! [Offer: 2 Wood -> 1 Gold]}"))
    second = session.pending()
    assert second.role == 1 and "Wood is cheap for me!" in second.text
    assert "[Accept]" in second.legal_actions


def test_transcripts_round_trip_as_json(games, tmp_path):
    rules = build_rules("kuhn", games["kuhn"])
    eps = play_games([GameJob(rules, s, (RandomPolicy(0), RandomPolicy(1))) for s in range(3)])
    path = tmp_path / "t" / "kuhn.jsonl"
    assert write_transcripts(eps, path) == 3
    rows = read_transcripts(path)
    assert [r["seed"] for r in rows] == [0, 1, 2]
    turn = rows[0]["turns"][0]
    assert set(turn) >= {"role", "prompt", "response", "action", "valid", "invalid_reason"}
    assert rows[0]["returns"] == list(eps[0].returns) and rows[0]["reason"]


def test_minimax_never_loses_to_random_over_200_games(games):
    rules = build_rules("tictactoe", games["tictactoe"])
    expert = build_opponent("tictactoe", games["tictactoe"], "expert", seed=0)
    rand = RandomPolicy(seed=9)
    jobs = [GameJob(rules, s, (expert, rand) if s % 2 else (rand, expert)) for s in range(200)]
    for ep in play_games(jobs):
        expert_role = 0 if ep.seed % 2 else 1
        assert ep.returns[expert_role] >= 0, ep.to_json()


def test_nim_expert_wins_every_winnable_start(games):
    rules = build_rules("nim", games["nim"])
    expert = build_opponent("nim", games["nim"], "expert", seed=0)
    eps = play_games([GameJob(rules, s, (expert, RandomPolicy(s))) for s in range(50)])
    assert all(ep.returns[0] == 1.0 for ep in eps)  # 3^4^5 != 0: the first mover wins


def test_unknown_opponent_and_untrusted_target_are_clear_errors(games):
    with pytest.raises(ConfigError, match="no opponent 'grandmaster'"):
        build_opponent("kuhn", games["kuhn"], "grandmaster", seed=0)
    evil = GameConfig(env={"_target_": "os.system", "command": "true"})
    with pytest.raises(ConfigError, match="not allowed"):
        build_rules("evil", evil)
    typo = GameConfig(env={"_target_": "games.kuhn.KuhnPokerGame", "num_round": 3})
    with pytest.raises(ConfigError, match="Valid: num_rounds"):
        build_rules("kuhn", typo)
    wrong = GameConfig(env={"_target_": "games.kuhn.KuhnNashPolicy"})
    with pytest.raises(ConfigError, match="not a GameEnv"):
        build_rules("kuhn", wrong)


@pytest.mark.slow  # a subprocess, a terminal or a training run
def test_library_game_loop_never_imports_a_specific_game():
    code = (
        "import sys\n"
        "import spiral_games.play.loop, spiral_games.play.game, spiral_games.play.registry, "
        "spiral_games.play.policy, spiral_games.play.parsing, spiral_games.config.compose\n"
        "print(sorted(m for m in sys.modules if m == 'games' or m.startswith('games.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stderr
    import_games = re.compile(r"^\s*(from games[ .]|import games\b)", re.MULTILINE)
    for path in (REPO / "spiral_games").rglob("*.py"):
        assert not import_games.search(path.read_text()), path


def test_kuhn_position_states_the_match_score_only_in_a_match_of_several_rounds():
    from games.kuhn import KuhnPokerGame

    game = KuhnPokerGame(num_rounds=3)
    game.reset(seed=0)
    assert "Round 1/3, chips: you +0, opponent +0" in game.current_state(game.current_role)
    game.step("[bet]")
    game.step("[call]")  # a showdown: 2 chips move
    state = game.current_state(game.current_role)
    assert "Round 2/3, chips: you " in state
    assert "you +2, opponent -2" in state or "you -2, opponent +2" in state
