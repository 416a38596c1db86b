"""Engines: vLLM (CPU) and transformers agree greedily, honour budgets and report truncation."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import pytest
import torch

from spiral_games.config.hardware import choose_dtype, this_machine
from spiral_games.config.schema import RolloutConfig
from spiral_games.errors import EngineError
from spiral_games.llm.agreement import compare, tolerance
from spiral_games.llm.engines.base import EngineSpec
from spiral_games.llm.engines.factory import build_engine
from spiral_games.llm.prompting import encode_prompt, encode_user_message
from spiral_games.logprobs import response_scores
from spiral_games.types import SamplingParams

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow

GREEDY = SamplingParams.greedy(16)


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
    """vLLM in the dtype `auto` chooses on this machine (float32 on AVX2 and AMX CPUs)."""
    pytest.importorskip("vllm")
    engine = build_engine(spec("vllm", smollm2))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def smol_fp32_forward(smollm2):
    """A transformers fp32 forward pass: the reference every engine is compared with."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(smollm2.path), dtype=torch.float32).eval()


def auto_dtype(kind: str) -> str:
    return choose_dtype("auto", this_machine(), kind)[0]


PROBES = ("What is the capital of France?", "Name a colour.", "Count from one to ten.")


@pytest.mark.parametrize("engine_fixture", ["smol_hf", "smol_vllm"])
def test_engines_in_their_auto_dtype_agree_with_transformers_fp32(
    engine_fixture, smollm2, smol_fp32_forward, request
):
    """The precision `auto` picks here must give the fp32 model's greedy choices and log-probs,
    within the tolerance stated (and measured) for that precision in RolloutConfig."""
    engine = request.getfixturevalue(engine_fixture)
    kind = "hf" if engine_fixture == "smol_hf" else "vllm"
    dtype, rollout = auto_dtype(kind), RolloutConfig()
    tol = tolerance(dtype, "float32", rollout.agreement_tol_fp32, rollout.agreement_tol_reduced)
    prompts = [encode_user_message(smollm2.tokenizer, text) for text in PROBES]
    for generation in engine.generate(prompts, GREEDY):
        lp, top = response_scores(smol_fp32_forward, generation.prompt_ids, generation.token_ids)
        agreement = compare(generation, lp, top, dtype, "float32", tol)
        assert agreement.ok, agreement.describe()
    assert "Paris" in engine.generate(prompts[:1], GREEDY)[0].text


def test_vllm_and_transformers_in_fp32_agree_token_for_token(smollm2, smol_hf, smol_vllm):
    """The strict comparison: in fp32 both engines give the same 16 greedy tokens and log-probs
    within 1e-3 (measured here: 2e-5). Where `auto` picks bf16, fp32 engines are built for it."""
    hf_engine, vllm_engine, built = smol_hf, smol_vllm, []
    if auto_dtype("hf") != "float32":
        hf_engine = build_engine(dataclasses.replace(spec("hf", smollm2), dtype="float32"))
        built.append(hf_engine)
    if auto_dtype("vllm") != "float32":
        vllm_engine = build_engine(dataclasses.replace(spec("vllm", smollm2), dtype="float32"))
        built.append(vllm_engine)
    try:
        prompts = [encode_user_message(smollm2.tokenizer, text) for text in PROBES]
        for hf, vl in zip(
            hf_engine.generate(prompts, GREEDY), vllm_engine.generate(prompts, GREEDY), strict=True
        ):
            assert hf.token_ids == vl.token_ids, (hf.text, vl.text)
            assert vl.logprobs == pytest.approx(hf.logprobs, abs=1e-3)
    finally:
        for engine in built:
            engine.close()


@pytest.mark.parametrize("engine_fixture", ["smol_hf", "smol_vllm"])
def test_engine_reports_finite_logprobs_and_truncation(
    engine_fixture, smollm2, request, reliability
):
    engine = request.getfixturevalue(engine_fixture)
    prompt = encode_prompt(smollm2.tokenizer, "Tell me a long story about a dragon.", "chat")
    out = engine.generate(
        [prompt], SamplingParams(temperature=1.0, top_p=1.0, max_tokens=5, seed=1)
    )[0]
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
    out = engine.generate(
        [prompt], SamplingParams(temperature=0.0, top_p=1.0, max_tokens=64, stop=("5",))
    )
    assert not out[0].truncated
    assert "5" not in out[0].text and "4" in out[0].text


@pytest.mark.parametrize("engine_fixture", ["smol_hf", "smol_vllm"])
def test_prompt_plus_budget_beyond_context_is_a_clear_error(engine_fixture, request):
    engine = request.getfixturevalue(engine_fixture)
    with pytest.raises(EngineError, match="max_model_len"):
        engine.generate([[1] * 2000], SamplingParams(temperature=1.0, top_p=1.0, max_tokens=100))


def test_unknown_engine_names_the_choices(tiny):
    with pytest.raises(EngineError, match="'vllm' or 'hf'"):
        build_engine(spec("tensorrt", tiny))


def test_engine_spec_takes_its_numbers_from_the_rollout_config():
    """EngineSpec declares no defaults of its own: each has one home, the config dataclass."""
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(EngineSpec))
    rollout = RolloutConfig(max_model_len=512, cpu_threads=3, kv_cache_gib=2)
    got = EngineSpec.from_rollout("vllm", Path("m"), rollout, dtype="float32", seed=7)
    assert got.rollout is rollout  # context, KV cache, tensor parallelism, sleep: read, not copied
    assert (got.cpu_threads, got.seed, got.worker_index, got.weight_sync) == (3, 7, 0, "file")
    auto = EngineSpec.from_rollout("hf", Path("m"), RolloutConfig(), dtype="auto", seed=0)
    assert auto.cpu_threads >= 1  # rollout.cpu_threads=0 resolved: vLLM-CPU binds real cores


def test_vllm_cpu_kv_cache_is_the_size_chosen_for_the_games_it_serves(smol_vllm):
    """rollout.kv_cache_gib=0 (auto): vLLM-CPU's cache is what `choose_kv_cache` chose, room for
    `rollout.concurrent_games` full contexts unless this machine's free memory capped it."""
    if torch.cuda.is_available():
        pytest.skip("on a GPU vLLM sizes its KV cache from free GPU memory")
    if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        pytest.skip("VLLM_CPU_KVCACHE_SPACE is set: vLLM takes that size")
    rollout = RolloutConfig()
    chosen = smol_vllm.kv_cache
    assert chosen.reason.startswith("auto: 16 sequences x 2048 tokens")
    cache = smol_vllm.llm.llm_engine.vllm_config.cache_config
    held = cache.num_gpu_blocks * cache.block_size  # tokens, as vLLM's scheduler counts them
    assert chosen.tokens - 2 * cache.block_size <= held <= chosen.tokens
    if "capped" not in chosen.reason:
        # every game's whole context, plus the block vLLM keeps back
        assert chosen.tokens == rollout.concurrent_games * rollout.max_model_len + cache.block_size


def streamed_tolerance() -> float:
    return 1e-3 if auto_dtype("vllm") == "float32" else RolloutConfig().agreement_tol_reduced


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
        # the same kernels on the same tokens; a batch of other size may round differently in
        # reduced precision (one bf16 step is 0.125 near a logit of 16-32)
        assert got.logprobs == pytest.approx(expected.logprobs, abs=streamed_tolerance())
    assert len(first[quick].token_ids) == 2 and first[quick].truncated
    dropped = [smol_vllm.submit(p, GREEDY) for p in prompts]
    smol_vllm.abort(dropped)
    assert len(smol_vllm.generate(prompts[:1], GREEDY)) == 1  # idle again after the abort
    with pytest.raises(EngineError, match="no request"):
        smol_vllm.poll(dropped)


def test_vllm_masked_choice_states_the_distribution_transformers_computes(smollm2, smol_vllm):
    """action_format=choice on vLLM: one allowed token per reply, and the stated probabilities
    of the choices (computed from vLLM's log-probs of exactly those tokens) are the fp32
    forward pass renormalised over them, batched and streamed alike."""
    from spiral_games.llm.choice import choice_tokens

    tok = smollm2.tokenizer
    asks = [
        ("You hold J. Player 0 bet.", ("[call]", "[fold]")),
        ("Board:\nX..\n.O.\n...", ("[1]", "[2]", "[3]", "[5]", "[6]", "[7]", "[8]")),
    ]
    prompts = [encode_prompt(tok, text, "short", legal, choice=True) for text, legal in asks]
    choices = [choice_tokens(tok, legal) for _, legal in asks]
    sampled = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=24)
    batched = smol_vllm.choose(prompts, choices, sampled)
    streamed = smol_vllm.poll([smol_vllm.submit(prompts[0], sampled, choices[0])])
    fp32 = EngineSpec.from_rollout("hf", smollm2.path, RolloutConfig(), dtype="float32", seed=0)
    expected = build_engine(fp32).choose(prompts, choices, sampled)
    rollout = RolloutConfig()  # the tolerance stated for vLLM's dtype here
    tol = tolerance(
        auto_dtype("vllm"), "float32", rollout.agreement_tol_fp32, rollout.agreement_tol_reduced
    )
    for got, want in zip(batched, expected, strict=True):
        assert len(got.token_ids) == 1 and got.token_ids[0] in got.choice_ids
        assert got.choice_ids == want.choice_ids
        assert got.choice_logprobs == pytest.approx(want.choice_logprobs, abs=tol)
    (one,) = streamed.values()
    assert one.choice_ids == choices[0] and one.token_ids[0] in choices[0]
    assert one.choice_logprobs == pytest.approx(batched[0].choice_logprobs, abs=tol)


def test_vllm_draws_a_choice_at_any_temperature_from_its_stated_distribution(smollm2, smol_vllm):
    """vLLM's sampler refuses temperatures above 2; a masked choice is drawn by the engine
    from its exact distribution instead, so any temperature works, a seed repeats the draws,
    and the draws follow the stated probabilities. Free text above 2 is one clear error."""
    from spiral_games.llm.choice import choice_tokens

    tok = smollm2.tokenizer
    legal = ("[1]", "[2]", "[3]", "[5]", "[6]", "[7]", "[8]")
    prompt = encode_prompt(tok, "Board:\nX..\n.O.\n...", "short", legal, choice=True)
    options = choice_tokens(tok, legal)
    hot = SamplingParams(temperature=4.0, top_p=1.0, max_tokens=24, seed=7)
    draws = smol_vllm.choose([prompt] * 400, [options] * 400, hot)
    again = smol_vllm.choose([prompt] * 400, [options] * 400, hot)
    assert [g.token_ids for g in draws] == [g.token_ids for g in again]
    stated = [math.exp(x) for x in draws[0].choice_logprobs]
    assert max(stated) < 0.9  # spread enough for the frequencies to say something
    for k, token in enumerate(options):
        share = sum(g.token_ids[0] == token for g in draws) / len(draws)
        assert abs(share - stated[k]) <= 4 * math.sqrt(stated[k] * (1 - stated[k]) / 400) + 1e-9
    for g in draws:  # each draw's own log-prob is its choice's, at that temperature
        assert g.logprobs[0] == pytest.approx(g.choice_logprobs[options.index(g.token_ids[0])])
    with pytest.raises(EngineError, match=r"rollout\.temperature"):
        smol_vllm.generate([prompt], SamplingParams(temperature=4.0, top_p=1.0, max_tokens=4))


def test_vllm_streamed_spelled_choices_match_batched_ones_and_abort_cleanly(smollm2, smol_vllm):
    """A spelled choice (LiarsDice's bids, held-out evaluation) through vLLM's request queue:
    each ticket is re-queued at every branch of its name and answered once the name is whole;
    greedily, the names and token log-probs are those of the batched path; a ticket dropped
    mid-spelling leaves the engine idle and the policy holding nothing of it."""
    from spiral_games.llm.policy import LLMPolicy
    from spiral_games.types import Observation

    bids = ("[Call]", *(f"[Bid: {q}, {f}]" for q in range(1, 11) for f in range(1, 7)))
    asks = [
        Observation("liars", 0, f"Your dice: {dice}. Player 1 bid [Bid: 2, 3]. Bid or call.", bids)
        for dice in ("1, 1, 2, 5, 6", "3, 3, 3, 4, 6", "2, 4, 4, 5, 6")
    ]
    free = Observation("chat", 0, "Say hello.", None)

    def player(stream: bool) -> LLMPolicy:
        return LLMPolicy(
            smol_vllm,
            smollm2.tokenizer,
            SamplingParams(temperature=0.0, top_p=1.0, max_tokens=6),
            {},
            2048,
            on_context_overflow="draw",
            default_style="short",
            stream=stream,
            choice_games=("liars",),
            spell=True,
        )

    batched = player(False).act([*asks, free])
    streaming = player(True)
    tickets = [streaming.submit(obs) for obs in [*asks, free]]
    answers: dict = {}
    while len(answers) < len(tickets):
        answers.update(streaming.poll([t for t in tickets if t not in answers]))
    for ticket, expected in zip(tickets, batched, strict=True):
        got = answers[ticket]
        assert got.action == expected.action and got.token_ids == expected.token_ids
        assert got.logprobs == pytest.approx(expected.logprobs, abs=streamed_tolerance())
    assert (
        all(answers[t].action in bids for t in tickets[:3]) and answers[tickets[3]].action is None
    )
    dropped = streaming.submit(asks[0])
    streaming.abort([dropped])
    assert not streaming._spelling and not streaming._asked
    assert len(smol_vllm.generate([[1, 2, 3]], GREEDY)) == 1  # idle again after the abort
