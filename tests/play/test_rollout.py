"""Rollout: a worker plays many concurrent games with both engines; episodes are complete and
their behaviour logprobs match a transformers teacher-forced recomputation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from spiral_games.actors.rollout_worker import RolloutWorker, WorkerConfig
from spiral_games.config.compose import compose_run_config
from spiral_games.errors import ConfigError, EngineError, GameError, RolloutError
from spiral_games.logprobs import response_logprobs

from ..conftest import REPO

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow


def worker_config(
    model, engine, dtype="float32", max_tokens=24, opponent=None, games="kuhn,tictactoe"
):
    overrides = [
        f"+games=[{games}]",
        # free text, whose recorded log-probs are over the whole vocabulary (check_turns); a
        # masked choice's are tested in tests/llm/test_choice.py
        "model.action_format=lenient",
        "rollout.temperature=0.7",
        f"rollout.engine={engine}",
        f"model.dtype={dtype}",
        f"rollout.max_tokens={max_tokens}",
        "rollout.concurrent_games=8",
    ]
    if opponent:
        overrides.append(f"rollout.opponents={opponent}")
    return WorkerConfig.from_run(compose_run_config(REPO / "conf", overrides), model.path)


def check_episodes(episodes, model, n, dtype, tolerance, trained_only=False):
    assert len(episodes) == n
    assert {e.game for e in episodes} <= {"kuhn", "tictactoe"}
    turns = []
    for ep in episodes:
        assert ep.version == 0
        assert ep.turns and ep.turns[0].role == 0
        chips = {(0.5, -0.5), (-0.5, 0.5)} if ep.game == "kuhn" else set()  # chips won / 2
        assert (
            ep.returns in {(1.0, -1.0), (-1.0, 1.0), (0.0, 0.0), (-1.5, 0.5), (0.5, -1.5)} | chips
        )
        for t in ep.turns:
            if t.role in ep.trained_roles or not trained_only:
                assert t.response_ids and len(t.logprobs) == len(t.response_ids)
                assert all(math.isfinite(x) for x in t.logprobs)
                turns.append(t)
    check_turns(turns, model, dtype, tolerance)


def check_turns(turns, model, dtype="float32", tolerance=1e-3):
    """The recorded log-probs of `turns` are `model`'s (recomputed with transformers)."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(model.path), dtype=getattr(torch, dtype))
    recomputed = response_logprobs(
        hf, [t.prompt_ids for t in turns], [t.response_ids for t in turns], pad_id=0
    )
    diffs = [
        abs(a - b)
        for t, r in zip(turns, recomputed, strict=True)
        for a, b in zip(t.logprobs, r, strict=True)
    ]
    assert sum(diffs) / len(diffs) < tolerance, max(diffs)


def test_hf_worker_plays_concurrent_self_play_games(tiny):
    worker = RolloutWorker(worker_config(tiny, "hf"))
    episodes = worker.collect(6, seed=0)
    check_episodes(episodes, tiny, 6, "float32", tolerance=1e-3)
    assert {e.trained_roles for e in episodes} == {(0, 1)}
    assert worker.collect(6, seed=0)[0].game == episodes[0].game  # plan is seeded


def test_fixed_opponent_mode_trains_only_the_model_seat(tiny):
    worker = RolloutWorker(worker_config(tiny, "hf", opponent="random"))
    episodes = worker.collect(8, seed=1)
    seats = {e.trained_roles for e in episodes}
    assert seats == {(0,), (1,)}
    for ep in episodes:
        opponent_turns = [t for t in ep.turns if t.role not in ep.trained_roles]
        assert all(not t.response_ids for t in opponent_turns)  # scripted: no tokens
    check_episodes(episodes, tiny, 8, "float32", tolerance=1e-3, trained_only=True)


@pytest.mark.vllm
def test_vllm_worker_logprobs_match_transformers(tiny):
    pytest.importorskip("vllm")
    worker = RolloutWorker(worker_config(tiny, "vllm"))
    try:
        check_episodes(worker.collect(6, seed=2), tiny, 6, "float32", tolerance=1e-2)
    finally:
        worker.close()


@pytest.mark.vllm
def test_smollm2_vllm_worker_completes_games_at_small_budgets(smollm2):
    pytest.importorskip("vllm")
    # dtype auto: bf16 where the CPU has it natively, fp32 elsewhere (4x faster on AVX2)
    worker = RolloutWorker(worker_config(smollm2, "vllm", dtype="auto", max_tokens=48))
    tolerance = 0.15 if worker.cfg.dtype == "bfloat16" else 1e-2
    try:
        check_episodes(worker.collect(4, seed=3), smollm2, 4, worker.cfg.dtype, tolerance)
    finally:
        worker.close()


def test_auto_engine_falls_back_to_transformers_when_vllm_cannot_start(tiny, monkeypatch):
    import sys

    cfg = worker_config(tiny, "auto")
    if cfg.engine == "hf":  # this machine cannot try vLLM at all: force the attempt
        cfg = dataclasses.replace(cfg, engine="vllm", engine_fallback="hf")
    assert (cfg.engine, cfg.engine_fallback) == ("vllm", "hf")
    monkeypatch.setitem(sys.modules, "vllm", None)  # vLLM's start fails, as without an install
    worker = RolloutWorker(cfg)
    info = worker.engine_info()
    assert info["engine"] == "hf" and "vllm failed to start" in info["note"]
    check_episodes(worker.collect(4, seed=0), tiny, 4, "float32", tolerance=1e-3)


def test_explicit_vllm_that_cannot_start_is_not_silently_replaced(tiny, monkeypatch):
    import sys

    cfg = dataclasses.replace(worker_config(tiny, "hf"), engine="vllm", engine_fallback=None)
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(EngineError, match=r"rollout\.engine=auto"):
        RolloutWorker(cfg)


def test_a_worker_uses_the_threads_it_is_given(tiny):

    before = torch.get_num_threads()
    try:
        worker = RolloutWorker(dataclasses.replace(worker_config(tiny, "hf"), cpu_threads=1))
        assert torch.get_num_threads() == 1 and worker.location()["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_zero_workers_and_overlong_budgets_are_config_errors():
    with pytest.raises(ConfigError, match=r"rollout\.num_workers=0"):
        compose_run_config(REPO / "conf", ["+games=[kuhn]", "rollout.num_workers=0"])
    with pytest.raises(ConfigError, match="max_tokens=4096 leaves no room"):
        compose_run_config(REPO / "conf", ["+games=[kuhn]", "rollout.max_tokens=4096"])
    with pytest.raises(ConfigError, match=r"rollout\.opponents='grandmaster' is neither"):
        compose_run_config(REPO / "conf", ["+games=[kuhn]", "rollout.opponents=grandmaster"])


def test_missing_vllm_is_a_clear_engine_error(tiny, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vllm", None)  # what an install without vLLM looks like
    from spiral_games.config.schema import RolloutConfig
    from spiral_games.llm.engines.base import EngineSpec
    from spiral_games.llm.engines.factory import build_engine

    spec = EngineSpec.from_rollout("vllm", tiny.path, RolloutConfig(), dtype="auto", seed=0)
    with pytest.raises(EngineError, match=r"rollout\.engine=hf"):
        build_engine(spec)


def test_llm_opponent_from_a_model_name_sits_in_the_fixed_seat(tiny):
    from spiral_games.config.schema import EvalConfig, GameConfig, ModelConfig, RolloutConfig
    from spiral_games.play.loop import GameJob, play_games
    from spiral_games.play.registry import build_opponent, build_rules

    cfg = compose_run_config(REPO / "conf", ["+games=[kuhn]"]).games["kuhn"]
    game = GameConfig(
        **{
            **cfg.__dict__,
            "opponents": {
                "past": {
                    "_target_": "spiral_games.llm.policy.llm_opponent",
                    "model": str(tiny.path),
                    "max_tokens": 8,
                    "dtype": "float32",
                }
            },
        }
    )
    opponent = build_opponent("kuhn", game, "past", seed=0)
    # What the YAML leaves unset comes from the config dataclasses, not from llm_opponent.
    assert (opponent.params.temperature, opponent.params.top_p) == (
        EvalConfig().temperature,
        EvalConfig().top_p,
    )
    assert opponent.params.max_tokens == 8 and opponent.default_style == ModelConfig().prompt_style
    assert opponent.max_model_len == RolloutConfig().max_model_len
    rand = build_opponent("kuhn", cfg, "random", seed=0)
    episodes = play_games(
        [GameJob(build_rules("kuhn", game), s, (opponent, rand)) for s in range(3)]
    )
    llm_turns = [t for e in episodes for t in e.turns if t.role == 0]
    assert llm_turns and all(len(t.response_ids) <= 8 and t.logprobs for t in llm_turns)


@pytest.mark.parametrize("mode", ["draw", "truncate"])
def test_history_beyond_the_context_is_truncated_or_drawn_by_config(mode, tiny, reliability):
    from spiral_games.config.schema import RolloutConfig
    from spiral_games.llm.engines.base import EngineSpec
    from spiral_games.llm.engines.hf import HFEngine
    from spiral_games.llm.policy import LLMPolicy
    from spiral_games.types import Observation, SamplingParams

    rollout = RolloutConfig(max_model_len=400)
    engine = HFEngine(EngineSpec.from_rollout("hf", tiny.path, rollout, dtype="float32", seed=0))
    policy = LLMPolicy(
        engine,
        tiny.tokenizer,
        SamplingParams(temperature=1.0, top_p=1.0, max_tokens=16),
        {"kuhn": "chat"},
        max_model_len=400,
        on_context_overflow=mode,
    )
    history = "RULES: bet or check.\n" + "Player 0 chose [check].\n" * 200 + "LATEST: your turn."
    short, long = (Observation("kuhn", 0, t, None) for t in ("Your turn.", history))
    fine, over = policy.act([short, long])
    assert fine.token_ids and not fine.context_overflow and not fine.context_truncated
    if mode == "draw":
        assert over.context_overflow and not over.token_ids
    else:
        assert over.context_truncated and over.token_ids
        assert len(over.prompt_ids) <= 400 - 16
        text = tiny.tokenizer.decode(over.prompt_ids)
        assert "RULES" in text and "LATEST: your turn." in text and "truncated" in text
    reliability.update(
        fault=f"Game history outgrows the model context (on_context_overflow={mode})",
        tries=1,
        outcome="game drawn and reported" if mode == "draw" else "history middle truncated",
        order=5,
    )


def test_short_prompt_style_lists_the_legal_moves_in_the_chat_template(tiny):
    from spiral_games.llm.prompting import RAW_PREFIX, build_prompt_text

    text = build_prompt_text(tiny.tokenizer, "Your card: K.", "short", ("[check]", "[bet]"))
    assert (
        "Your card: K.\n\nChoose one of: [check], [bet]. Reply with \\boxed{your action}." in text
    )
    assert text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\n")
    assert RAW_PREFIX not in text
    free_form = build_prompt_text(tiny.tokenizer, "Make an offer.", "short", None)
    assert "Choose one of" not in free_form and "\\boxed{your action}" in free_form


def test_short_prompt_shows_the_position_and_chat_the_full_observation(tiny):
    from spiral_games.config.schema import RolloutConfig
    from spiral_games.llm.engines.base import EngineSpec
    from spiral_games.llm.engines.hf import HFEngine
    from spiral_games.llm.policy import LLMPolicy
    from spiral_games.types import Observation, SamplingParams

    rollout = RolloutConfig(max_model_len=512)
    engine = HFEngine(EngineSpec.from_rollout("hf", tiny.path, rollout, dtype="float32", seed=0))
    obs = Observation(
        "tictactoe", 0, "[GAME] history of every board", ("[4]",), position="the board now"
    )
    prompts = {}
    for style in ("short", "chat"):
        policy = LLMPolicy(
            engine,
            tiny.tokenizer,
            SamplingParams(temperature=1.0, top_p=1.0, max_tokens=4),
            {"tictactoe": style},
            512,
            on_context_overflow="draw",
        )
        prompts[style] = tiny.tokenizer.decode(policy.act([obs])[0].prompt_ids)
    unlisted = LLMPolicy(
        engine,
        tiny.tokenizer,
        SamplingParams(temperature=1.0, top_p=1.0, max_tokens=4),
        {},
        512,
        on_context_overflow="draw",
    )
    with pytest.raises(GameError, match="No prompt style for game 'tictactoe'"):
        unlisted.act([obs])
    assert "the board now" in prompts["short"] and "history" not in prompts["short"]
    assert "history of every board" in prompts["chat"] and "board now" not in prompts["chat"]


def test_league_worker_plays_each_snapshot_on_its_own_weights(tiny):
    """Two snapshots (tiny models of other seeds) and `random`: each snapshot seat's log-probs
    are its own model's, the learner's are the current model's, and the plan is seeded."""
    from spiral_games.llm.models import resolve_model
    from spiral_games.play.league import LeagueDraw

    config = worker_config(tiny, "hf", games="kuhn", opponent="league")
    assert config.league_fixed == ("random",)  # league.fixed's default
    worker = RolloutWorker(config)
    snaps = {f"step_00000{s}": resolve_model("tiny-random", seed=s) for s in (1, 2)}
    worker.set_league(
        {n: (str(m.path / "model.safetensors"), int(n[-1])) for n, m in snaps.items()}
    )
    draw = LeagueDraw(0.4, ("random", *snaps), (1.0, 1.0, 1.0))
    episodes = worker.collect(16, seed=3, draw=draw)
    again = worker.collect(16, seed=3, draw=draw)  # a resume or a restarted worker replays it
    assert [e.to_json() for e in episodes] == [e.to_json() for e in again]
    by_opponent = {
        name: [e for e in episodes if e.opponent == name] for name in ("", "random", *snaps)
    }
    assert all(by_opponent.values()), {k: len(v) for k, v in by_opponent.items()}
    for name, model in snaps.items():
        games = by_opponent[name]
        theirs = [t for e in games for t in e.turns if t.role not in e.trained_roles]
        mine = [t for e in games for t in e.turns if t.role in e.trained_roles]
        assert theirs and all(t.response_ids for t in theirs)
        check_turns(theirs, model)
        if mine:  # the learner may not get to move (an invalid first move by the snapshot)
            check_turns(mine, tiny)
    assert {e.trained_roles for e in by_opponent[""]} == {(0, 1)}
    worker.set_league({})  # a snapshot the league dropped is no longer drawn
    with pytest.raises(RolloutError, match="no weights for league members"):
        worker.collect(4, seed=0, draw=draw)
    worker.close()
