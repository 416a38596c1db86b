"""The held-out evaluation (launch/heldout.py): TextArena games the project does not wrap,
against the random opponent, the tiny model side by side with itself; and MATH/GPQA with it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spiral_games.config.compose import compare_overrides, compose_run_config
from spiral_games.config.schema import SPIRAL_HELDOUT_GAMES, EvalConfig, HeldoutConfig
from spiral_games.errors import ConfigError
from spiral_games.report.heldout import GameScore, transfer_markdown
from spiral_games.run.heldout import (
    GENERIC,
    REFERENCE,
    heldout_games,
    reasoning_config,
    run_heldout,
    score,
)
from spiral_games.run.heldout_resume import check_engine
from spiral_games.types import Episode, GameEnd

from ..conftest import REPO

CONF = REPO / "conf"
FIXTURES = REPO / "tests" / "fixtures"


def _heldout(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "launch/heldout.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _config(*overrides: str) -> HeldoutConfig:
    return compose_run_config(CONF, list(overrides), "heldout", HeldoutConfig)


def run_config_for(cfg: HeldoutConfig):
    from spiral_games.run.heldout import run_config

    return run_config(cfg, "smollm2-135m", heldout_games(["PigDice-v0"], CONF))


def _episode(seat: int, returns: tuple[float, float], invalid: int | None = None) -> Episode:
    end = GameEnd.INVALID_MOVE if invalid is not None else GameEnd.FINISHED
    return Episode("g", 0, (), returns, "", invalid_role=invalid, trained_roles=(seat,), end=end)


def test_scores_count_the_model_seat_by_hand():
    episodes = [
        _episode(0, (1.0, -1.0)),  # model in seat 0 wins
        _episode(1, (1.0, -1.0)),  # model in seat 1 loses
        _episode(1, (0.0, 0.0)),  # draw
        _episode(1, (0.5, -1.5), invalid=1),  # model's invalid reply: a loss
        _episode(0, (0.5, -1.5), invalid=1),  # opponent's invalid reply: a win
    ]
    s = score("m", "g", episodes, wall_s=3.0, cpu_s=2.0)
    assert (s.games, s.win_rate, s.draw_rate, s.loss_rate) == (5, 0.4, 0.2, 0.4)
    assert (s.invalid_rate, s.opponent_invalid_rate) == (0.2, 0.2)
    assert s.se("win_rate") == pytest.approx((0.4 * 0.6 / 5) ** 0.5)


def test_transfer_table_gives_each_model_and_its_difference_from_the_first():
    def game(model: str, win: float) -> GameScore:
        return GameScore(model, "Snake-v0", 100, win, 0.0, 1 - win, 0.0, 0.0, 5.0, 8.0, 1.0, 1.0)

    reasoning = {
        "base": {"math500": {"accuracy": 0.1, "stderr": 0.03, "problems": 100}},
        "trained": {"math500": {"accuracy": 0.25, "stderr": 0.04, "problems": 100}},
    }
    table = transfer_markdown(
        [game("base", 0.5), game("trained", 0.7)], ["base", "trained"], ["Snake-v0"], reasoning
    )
    assert "| Snake-v0: win rate | 0.500 ± 0.050 | 0.700 ± 0.046 | +0.200 ± 0.068 (+2.9) |" in table
    assert "| math500: pass@1 | 0.100 ± 0.030 | 0.250 ± 0.040 | +0.150 ± 0.050 (+3.0) |" in table


def test_transfer_table_carries_the_reference_players_line():
    def game(model: str, win: float) -> GameScore:
        return GameScore(model, "Snake-v0", 100, win, 0.0, 1 - win, 0.0, 0.0, 5.0, 8.0, 1.0, 1.0)

    reasoning = {"base": {"math500": {"accuracy": 0.1, "stderr": 0.03, "problems": 100}}}
    table = transfer_markdown(
        [game("base", 0.5)], ["base"], ["Snake-v0"], reasoning, [game(REFERENCE, 0.4)]
    )
    assert f"| measure | base | {REFERENCE} |" in table
    assert "| Snake-v0: win rate | 0.500 ± 0.050 | 0.400 ± 0.049 |" in table
    assert "| math500: pass@1 | 0.100 ± 0.030 | — |" in table


def test_a_choice_run_samples_free_text_and_the_reasoning_harness_at_text_temperature(tmp_path):
    cfg = _config("model.action_format=choice", "temperature=2.0", "text_temperature=0.6")
    run = run_config_for(cfg)
    assert (run.eval.temperature, run.eval.text_temperature) == (2.0, 0.6)
    from spiral_games.actors.rollout_worker import WorkerConfig

    worker = WorkerConfig.from_run(run, "unused-model-path")
    assert worker.eval_sampling.temperature == 2.0  # the choices
    assert worker.eval_text_sampling is not None and worker.eval_text_sampling.temperature == 0.6
    plain = WorkerConfig.from_run(run_config_for(_config()), "unused-model-path")
    assert plain.eval_text_sampling is None  # one temperature for both
    assert run.eval.spell_choices and not EvalConfig().spell_choices  # held-out only
    assert not run_config_for(_config("spell_choices=false")).eval.spell_choices
    assert reasoning_config(cfg, tmp_path).temperature == 0.6
    assert reasoning_config(_config("temperature=0.7"), tmp_path).temperature == 0.7
    with pytest.raises(ConfigError, match="text_temperature"):
        _config("text_temperature=-1")


def test_defaults_are_spirals_five_games_on_the_configured_model():
    cfg = _config()
    assert cfg.envs == list(SPIRAL_HELDOUT_GAMES)
    assert cfg.labelled_models == {"smollm2-135m": "smollm2-135m"}
    assert cfg.model.prompt_style == "short"  # conf/heldout.yaml selects the SmolLM2 recipe


def test_compare_turns_labels_into_models_and_keeps_config_keys():
    known = {"envs", "games_per_game", "model"}
    assert compare_overrides(
        ["--compare", "base=smollm2-135m", "trained=runs/x", "games_per_game=4", "model.seed=1"],
        known,
    ) == [
        "games_per_game=4",
        "model.seed=1",
        "+models.base='smollm2-135m'",
        "+models.trained='runs/x'",
    ]


def test_a_label_that_is_no_plain_name_is_refused_with_one_that_is():
    with pytest.raises(ConfigError, match=r"label 'lr1e-4' is not a plain name.*lr1e_4=runs/x"):
        compare_overrides(["--compare", "base=smollm2-135m", "lr1e-4=runs/x"], {"envs"})
    with pytest.raises(ConfigError, match=r"m_2nd=runs/y"):
        compare_overrides(["--compare", "2nd=runs/y"], {"envs"})


def test_unknown_game_is_one_error_naming_the_fix():
    with pytest.raises(ConfigError) as caught:
        heldout_games(["ConectFour-v0"], CONF)
    message = str(caught.value)
    assert "Unknown game 'ConectFour-v0'" in message and "Did you mean ConnectFour-v0" in message
    assert "envs=[ConnectFour-v0,PigDice-v0]" in message


def test_a_game_for_other_player_counts_is_refused():
    with pytest.raises(ConfigError, match="could not start ThreePlayerTicTacToe-v0 with two"):
        heldout_games(["ThreePlayerTicTacToe-v0"], CONF)


def test_a_textarena_id_the_project_wraps_is_played_by_its_own_module():
    games = heldout_games(["TicTacToe-v0", "ConnectFour-v0", "kuhn"], CONF)
    assert games["TicTacToe-v0"].source == "conf/games/tictactoe"
    assert games["TicTacToe-v0"].config.env["_target_"] == "games.tictactoe.TicTacToeGame"
    assert games["ConnectFour-v0"].source == GENERIC
    assert games["kuhn"].source == "conf/games/kuhn"


def test_missing_benchmark_file_is_refused_before_any_game(tiny, tmp_path):
    cfg = _config(
        "model=tiny-random",
        "envs=[PigDice-v0]",
        "harness=true",
        f"reasoning.data_dir={tmp_path}",
        f"output_dir={tmp_path / 'out'}",
    )
    with pytest.raises(ConfigError, match=f"put math500.jsonl \\(or .csv\\) in {tmp_path}"):
        run_heldout(cfg, CONF)
    assert not (tmp_path / "out").exists()


def test_games_argument_is_refused_with_the_key_to_use():
    out = _heldout("games=[ConnectFour-v0]", timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "takes its games as envs=[...]" in out.stderr


@pytest.mark.slow
def test_two_unwrapped_textarena_games_side_by_side_with_the_tiny_model(tiny, tmp_path):
    games = 4
    out = _heldout(
        "--compare",
        "base=tiny-random",
        f"again={tiny.path}",
        "model=tiny-random",
        "model.max_tokens=8",
        "envs=[ConnectFour-v0,PigDice-v0]",
        f"games_per_game={games}",
        f"output_dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| ConnectFour-v0: win rate |" in out.stdout and "Δ again − base" in out.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["games"] == {"ConnectFour-v0": GENERIC, "PigDice-v0": GENERIC}
    assert "cores" in results["machine"]
    scores = {(s["model"], s["game"]): s for s in results["scores"]}
    assert set(scores) == {(m, g) for m in ("base", "again") for g in results["games"]}
    # each game's score was appended as it finished, the same as the final table's
    kept = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    scored = results["reference"] + results["scores"]
    assert [{k: line[k] for k in s} for line, s in zip(kept, scored, strict=True)] == scored
    # the reference line: the random opponent in the model's seat, same games and seats
    reference = {s["game"]: s for s in results["reference"]}
    assert set(reference) == set(results["games"])
    for s in reference.values():
        assert s["model"] == REFERENCE and s["games"] == games and s["invalid_rate"] == 0
        assert s["win_rate"] + s["draw_rate"] + s["loss_rate"] == pytest.approx(1.0)
    assert f"Δ again − base | {REFERENCE} |" in out.stdout
    for (model, game), s in scores.items():
        assert s["games"] == games
        assert s["win_rate"] + s["draw_rate"] + s["loss_rate"] == pytest.approx(1.0)
        played = [
            json.loads(line)
            for line in (tmp_path / "transcripts" / model / f"{game}.jsonl").read_text().split("\n")
            if line
        ]
        assert len(played) == games
        invalid = sum(e["invalid_role"] == e["trained_roles"][0] for e in played)
        assert invalid == round(s["invalid_rate"] * games)
        assert invalid == sum(  # each invalid game ends on the model's own refused reply
            not e["turns"][-1]["valid"] and e["turns"][-1]["role"] == e["trained_roles"][0]
            for e in played
        )
        assert s["invalid_rate"] > 0  # the random tiny model's replies are mostly not moves
        assert s["wall_s"] > 0
    report = (tmp_path / "heldout.md").read_text()
    assert report.count("| PigDice-v0 |") == 3 and "Machine:" in report  # 2 models + random
    assert (tmp_path / "heldout.png").stat().st_size > 1000


def test_harness_runs_the_reasoning_subset_on_the_same_models(tiny, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(FIXTURES / "gpqa_diamond.csv", data)
    problems = [{"problem": f"What is {n} + {n}?", "answer": str(2 * n)} for n in range(1, 4)]
    (data / "math500.jsonl").write_text("\n".join(json.dumps(p) for p in problems) + "\n")
    cfg = _config(
        "model=tiny-random",
        "model.max_tokens=8",
        "envs=[PigDice-v0]",
        "games_per_game=2",
        "harness=true",
        f"reasoning.data_dir={data}",
        "reasoning.limit=2",
        "reasoning.max_tokens=8",
        f"output_dir={tmp_path / 'out'}",
    )
    out = run_heldout(cfg, CONF, say=lambda _: None)
    results = json.loads((out / "results.json").read_text())
    reasoning = results["reasoning"]["tiny-random"]
    assert {b: r["problems"] for b, r in reasoning.items()} == {"math500": 2, "gpqa_diamond": 2}
    report = (out / "heldout.md").read_text()
    assert "| math500: pass@1 |" in report and "| gpqa_diamond: pass@1 |" in report
    assert "first 2 problems, 1 sample(s) each, at most 8 tokens" in report
    assert (out / "reasoning" / "report.md").is_file()
    assert (out / "reasoning" / "chart.png").stat().st_size > 1000  # the harness's own chart
    assert Path(out / "heldout.png").stat().st_size > 1000


def test_unwrapped_games_are_played_by_masked_choice_without_an_invalid_move(tiny, tmp_path):
    """model.action_format=choice on ConnectFour, whose moves share their first token: every
    reply of the model is one token after the shared "col ", a legal move. LiarsDice's bids
    share more than that: each is spelled (spell_choices), a legal bid or call every time.
    TruthAndDeception's talk lists no move: the whole reply is the message."""
    games = 3
    out = _heldout(
        "--compare",
        "base=tiny-random",
        "model=tiny-random",
        "model.action_format=choice",
        "envs=[ConnectFour-v0,LiarsDice-v0,TruthAndDeception-v0]",
        f"games_per_game={games}",
        "reference=false",
        f"output_dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    scores = {s["game"]: s for s in json.loads((tmp_path / "results.json").read_text())["scores"]}

    def mine(game: str) -> list[dict]:
        lines = (tmp_path / "transcripts" / "base" / f"{game}.jsonl").read_text().split("\n")
        played = [json.loads(line) for line in lines if line]
        return [t for e in played for t in e["turns"] if t["role"] == e["trained_roles"][0]]

    four = scores["ConnectFour-v0"]
    assert four["games"] == games and four["invalid_rate"] == 0 and four["response_length"] == 1
    turns = mine("ConnectFour-v0")
    assert turns and all(t["valid"] and t["response"] in {str(c) for c in range(7)} for t in turns)
    assert scores["LiarsDice-v0"]["games"] == games and scores["LiarsDice-v0"]["invalid_rate"] == 0
    bids = mine("LiarsDice-v0")
    # a bid spelled whole; where only one bid is left beside the call, "B" picks it in one token
    spelled = [t for t in bids if t["action"] == f"[{t['response']}]"]
    assert len(spelled) > len(bids) / 2
    assert all(t["valid"] and (t["action"] or "")[1:].startswith(t["response"]) for t in bids)
    assert "spelled by masked choices" in (tmp_path / "heldout.md").read_text()
    talk = [t for t in mine("TruthAndDeception-v0") if not t["action"] or "Fact" not in t["action"]]
    said = [t for t in talk if t["response"].strip()]
    assert said and all(t["valid"] and t["action"] == " ".join(t["response"].split()) for t in said)


def test_resume_names_the_directory_and_refuses_another_output_dir(tmp_path):
    cfg = _config(f"resume={tmp_path}")
    assert cfg.resume and cfg.output_dir == str(tmp_path)
    assert not _config("resume=false").resume
    with pytest.raises(ConfigError, match=f"resume={tmp_path} continues the run in {tmp_path}"):
        _config(f"resume={tmp_path}", "output_dir=elsewhere")


def test_a_call_into_a_directory_with_scores_is_refused_and_they_are_kept(tiny, tmp_path):
    (tmp_path / "scores.jsonl").write_text('{"model": "base"}\n')
    cfg = _config("model=tiny-random", "envs=[PigDice-v0]", f"output_dir={tmp_path}")
    with pytest.raises(ConfigError, match=f"Continue it with resume={tmp_path}, or choose"):
        run_heldout(cfg, CONF)
    assert (tmp_path / "scores.jsonl").read_text() == '{"model": "base"}\n'
    with pytest.raises(ConfigError, match="holds no held-out call this version can continue"):
        run_heldout(_config("model=tiny-random", f"resume={tmp_path}"), CONF)  # no call.json
    with pytest.raises(ConfigError, match="choose another output_dir for a new call"):
        run_heldout(_config("model=tiny-random", f"resume={tmp_path / 'typo'}"), CONF)


def test_scores_on_another_engine_or_dtype_are_not_added_to_kept_ones():
    kept = [{"engine": {"engine": "vllm", "dtype": "float32", "load_s": "9.0"}}]
    check_engine("base", kept, {"engine": "vllm", "dtype": "float32", "load_s": "3.1"})
    with pytest.raises(ConfigError, match=r"rollout\.engine=vllm model\.dtype=float32, or start"):
        check_engine("base", kept, {"engine": "hf", "dtype": "bfloat16", "load_s": "1.0"})


def test_a_stopped_call_resumes_where_it_stopped_and_plays_only_what_is_missing(tiny, tmp_path):
    """A call that stopped after the random player's and the first model's games: resumed with
    a second model added, it plays only the second model, keeps the rest as they were (wall
    times, transcripts), and refuses a resume whose sampling differs."""
    games = 2
    common = ["model=tiny-random", "model.max_tokens=8", "envs=[PigDice-v0]"]
    common += [f"games_per_game={games}", f"output_dir={tmp_path}"]
    first = _config(*common, f"+models.a={tiny.path}")
    said: list[str] = []
    run_heldout(first, CONF, say=said.append)
    lines = (tmp_path / "scores.jsonl").read_text().splitlines()
    assert [json.loads(line)["model"] for line in lines] == [REFERENCE, "a"]
    kept = {json.loads(line)["model"]: json.loads(line) for line in lines}
    assert kept["a"]["weights"] == str(tiny.path) and kept["a"]["seed"] == 0
    transcript = (tmp_path / "transcripts" / "a" / "PigDice-v0.jsonl").read_text()
    (tmp_path / "results.json").unlink()  # as if stopped before its tables
    (tmp_path / "scores.jsonl").write_text("\n".join(lines) + '\n{"model": "b", "ga')  # cut short

    with pytest.raises(ConfigError, match=r"temperature=0\.6 \(now 0\.5\)"):
        run_heldout(_config(*common, "resume=true", "temperature=0.5"), CONF)
    both = [f"+models.a={tiny.path}", "+models.b=tiny-random"]
    said.clear()
    run_heldout(_config(*common, "resume=true", *both), CONF, say=said.append)
    assert sum("kept from the call this one resumes" in s for s in said) == 2  # a's, random's
    assert [s for s in said if s.startswith("b PigDice-v0: 2 games")]
    assert not [s for s in said if s.startswith(("a PigDice-v0: 2", f"{REFERENCE} PigDice-v0: 2"))]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["resumed"] == 2  # the random player's and a's
    by = {s["model"]: s for s in results["scores"] + results["reference"]}
    assert set(by) == {"a", "b", REFERENCE}
    for label in ("a", REFERENCE):  # kept as the first call scored them
        assert {k: by[label][k] for k in by[label]} == {k: kept[label][k] for k in by[label]}
    assert by["b"]["games"] == games and by["b"]["wall_s"] > 0
    assert (tmp_path / "transcripts" / "a" / "PigDice-v0.jsonl").read_text() == transcript
    assert len((tmp_path / "transcripts" / "b" / "PigDice-v0.jsonl").read_text().split("\n")) == 3
    assert "Resumed: 2 (model, game) scores kept" in (tmp_path / "heldout.md").read_text()
    lines = (tmp_path / "scores.jsonl").read_text().splitlines()  # the cut line is gone
    assert [json.loads(line)["model"] for line in lines] == [REFERENCE, "a", "b"]

    said.clear()  # the label a now names other weights: its games are played again
    again = ["+models.a=tiny-random", "+models.b=tiny-random"]
    run_heldout(_config(*common, f"resume={tmp_path}", *again), CONF, say=said.append)
    assert [s for s in said if s.startswith("a PigDice-v0: 2 games")]
    assert sum("kept from the call this one resumes" in s for s in said) == 2  # b's, random's
    lines = (tmp_path / "scores.jsonl").read_text().splitlines()
    assert [json.loads(line)["weights"] for line in lines][-1] == "tiny-random"
