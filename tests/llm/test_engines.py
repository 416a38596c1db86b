"""Engines: vLLM (CPU) and transformers agree greedily, honour budgets and report truncation."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from spiral_games.config.schema import RolloutConfig
from spiral_games.errors import EngineError
from spiral_games.llm.engines.base import EngineSpec
from spiral_games.llm.engines.factory import build_engine
from spiral_games.llm.prompting import encode_prompt, encode_user_message
from spiral_games.types import SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=16)


def spec(kind, model, **rollout):
    """An engine built as a worker of `RolloutConfig(**rollout)` would be."""
    return EngineSpec.from_rollout(kind, model.path, RolloutConfig(**rollout), dtype="auto", seed=0)


@pytest.fixture(scope="module")
def smol_hf(smollm2):
    engine = build_engine(spec("hf", smollm2))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def smol_vllm(smollm2):
    pytest.importorskip("vllm")
    engine = build_engine(spec("vllm", smollm2))
    yield engine
    engine.close()


def test_vllm_and_transformers_agree_greedily_on_smollm2(smollm2, smol_hf, smol_vllm):
    prompt = encode_user_message(smollm2.tokenizer, "What is the capital of France?")
    hf = smol_hf.generate([prompt], GREEDY)[0]
    vl = smol_vllm.generate([prompt], GREEDY)[0]
    assert len(hf.token_ids) >= 8 and len(vl.token_ids) >= 8
    assert hf.token_ids[:8] == vl.token_ids[:8], (hf.text, vl.text)
    assert "Paris" in hf.text


@pytest.mark.parametrize("engine_fixture", ["smol_hf", "smol_vllm"])
def test_engine_reports_finite_logprobs_and_truncation(
    engine_fixture, smollm2, request, reliability
):
    engine = request.getfixturevalue(engine_fixture)
    prompt = encode_prompt(smollm2.tokenizer, "Tell me a long story about a dragon.", "chat")
    out = engine.generate([prompt], SamplingParams(temperature=1.0, max_tokens=5, seed=1))[0]
    assert len(out.token_ids) == len(out.logprobs) == 5
    assert out.truncated
    assert all(math.isfinite(lp) and lp <= 0 for lp in out.logprobs)
    short = engine.generate([prompt[:3], prompt], GREEDY)
    assert [g.prompt_ids for g in short] == [tuple(prompt[:3]), tuple(prompt)]
    reliability.update(
        fault="Runaway generation (a story with max_tokens=5)",
        tries=1,
        outcome="stopped at max_tokens and flagged as truncated",
        order=5,
    )


@pytest.mark.parametrize("engine_fixture", ["smol_hf", "smol_vllm"])
def test_engine_stops_at_a_stop_string(engine_fixture, smollm2, request):
    engine = request.getfixturevalue(engine_fixture)
    prompt = encode_user_message(smollm2.tokenizer, "Count from 1 to 20, separated by commas.")
    out = engine.generate([prompt], SamplingParams(temperature=0.0, max_tokens=64, stop=("5",)))
    assert not out[0].truncated
    assert "5" not in out[0].text and "4" in out[0].text


@pytest.mark.parametrize("engine_fixture", ["smol_hf", "smol_vllm"])
def test_prompt_plus_budget_beyond_context_is_a_clear_error(engine_fixture, request):
    engine = request.getfixturevalue(engine_fixture)
    with pytest.raises(EngineError, match="max_model_len"):
        engine.generate([[1] * 2000], SamplingParams(max_tokens=100))


def test_unknown_engine_names_the_choices(tiny):
    with pytest.raises(EngineError, match="'vllm' or 'hf'"):
        build_engine(spec("tensorrt", tiny))


def test_engine_spec_takes_its_numbers_from_the_rollout_config():
    """EngineSpec declares no defaults of its own: each has one home, the config dataclass."""
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(EngineSpec))
    rollout = RolloutConfig(max_model_len=512, cpu_threads=3, kv_cache_gib=2)
    got = EngineSpec.from_rollout("vllm", Path("m"), rollout, dtype="float32", seed=7)
    assert (got.max_model_len, got.cpu_threads, got.kv_cache_gib, got.seed) == (512, 3, 2, 7)
    assert (got.tensor_parallel_size, got.sleep_mode, got.worker_index) == (1, False, 0)
    auto = EngineSpec.from_rollout("hf", Path("m"), RolloutConfig(), dtype="auto", seed=0)
    assert auto.cpu_threads >= 1  # rollout.cpu_threads=0 resolved: vLLM-CPU binds real cores


def test_vllm_streamed_requests_match_a_batched_call_and_answer_as_they_finish(smollm2, smol_vllm):
    """rollout.batching=stream: requests join vLLM's running batch one at a time, `poll`
    answers whichever are done, and a greedy streamed reply equals the batched one."""
    prompts = [
        encode_user_message(smollm2.tokenizer, text)
        for text in ("Name a colour.", "Count from one to ten.", "Say hi.")
    ]
    batched = smol_vllm.generate(prompts, GREEDY)
    short = dataclasses.replace(GREEDY, max_tokens=2)
    ids = [smol_vllm.submit(p, GREEDY) for p in prompts]
    quick = smol_vllm.submit(prompts[0], short)
    with pytest.raises(EngineError, match="still open"):
        smol_vllm.generate(prompts, GREEDY)  # it would swallow the streamed outputs
    first = smol_vllm.poll([quick, *ids])
    assert quick in first  # 2 tokens finish before 16: not held back by the longer replies
    answers = {k: v for k, v in first.items() if k != quick}
    while len(answers) < len(ids):
        answers.update(smol_vllm.poll([i for i in ids if i not in answers]))
    for request_id, expected in zip(ids, batched, strict=True):
        got = answers[request_id]
        assert got.token_ids == expected.token_ids and got.text == expected.text
        assert len(got.logprobs) == len(got.token_ids)
        assert got.logprobs == pytest.approx(expected.logprobs, abs=1e-3)
    assert len(first[quick].token_ids) == 2 and first[quick].truncated
    dropped = [smol_vllm.submit(p, GREEDY) for p in prompts]
    smol_vllm.abort(dropped)
    assert len(smol_vllm.generate(prompts[:1], GREEDY)) == 1  # idle again after the abort
    with pytest.raises(EngineError, match="no request"):
        smol_vllm.poll(dropped)
