"""The precision benchmark: fp32 against bf16 on this machine, for the rollout engine and the
learner, and whether the `auto` choices picked the faster one."""

from __future__ import annotations

import dataclasses
from functools import partial

from spiral_games.config.choices import Dtype, EngineKind
from spiral_games.config.hardware import RuntimePlan, plan_runtime
from spiral_games.config.schema import RunConfig
from spiral_games.learn.learner import LearnerSpec
from spiral_games.llm.models import resolve_configured
from spiral_games.perf.learner import synthetic_batch
from spiral_games.perf.measure import measure
from spiral_games.types import TrainBatch

PRECISIONS = (("fp32", Dtype.float32), ("bf16", Dtype.bfloat16))


GENERATE_BATCHES = (1, 8, 32)


def _generation_speed(
    cfg: RunConfig, engine_kind: EngineKind, dtype: Dtype, batches: tuple[int, ...]
):
    """Generated tokens/s of the engine in `dtype` at each batch size (after one warm-up)."""
    from spiral_games.actors.rollout_worker import WorkerConfig
    from spiral_games.llm.engines.factory import build_engine
    from spiral_games.llm.prompting import encode_user_message
    from spiral_games.process_setup import set_cpu_threads
    from spiral_games.types import SamplingParams

    model = resolve_configured(cfg.model)
    plan = plan_runtime(cfg)
    set_cpu_threads(plan.rollout_threads)
    worker = WorkerConfig.from_run(cfg, model.path, plan)
    engine = build_engine(dataclasses.replace(worker.engine_spec(engine_kind, 0), dtype=dtype))
    prompt = encode_user_message(model.tokenizer, "Tell me a long story about a poker game.")
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=worker.reply_budget)
    try:
        engine.generate([prompt], params)  # warm-up: first calls pay one-off costs
        rows = {}
        for batch in batches:
            generations, seconds = measure(partial(engine.generate, [prompt] * batch, params))
            tokens = sum(len(g.token_ids) for g in generations)
            rows[str(batch)] = {
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_s": tokens / seconds,
            }
    finally:
        engine.close()
    return rows


# One micro-batch of 2 x (64 + 64) tokens: small enough that bf16 on a CPU without it
# (2.5 tok/s on AVX2) still finishes in about 100 s.
UPDATE_SHAPE = {"samples_n": 2, "prompt": 64, "length": 64}


def _update_speed(cfg: RunConfig, bf16: bool) -> dict:
    """Tokens/s of one learner update (fwd + bwd + AdamW) with or without bf16 autocast."""
    from spiral_games.learn.learner import Learner

    model = resolve_configured(cfg.model)
    n = UPDATE_SHAPE["samples_n"]
    spec = LearnerSpec.from_run(cfg, model.path)
    shape = dataclasses.replace(spec.learner, minibatch_size=n, micro_batch_size=n)
    spec = dataclasses.replace(spec, learner=shape, bf16=bf16)
    learner = Learner(spec)
    batch = synthetic_batch(cfg, len(model.tokenizer), **UPDATE_SHAPE)
    warm = TrainBatch(
        tuple(
            dataclasses.replace(
                s,
                prompt_ids=s.prompt_ids[:8],
                response_ids=s.response_ids[:8],
                logprobs=s.logprobs[:8],
            )
            for s in batch.samples
        ),
        step=0,
    )
    learner.update(warm)  # warm-up on short sequences: allocator and kernel selection
    metrics = learner.update(batch)
    return {
        "tokens": metrics["train/tokens"],
        "seconds": metrics["train/seconds"],
        "tokens_per_s": metrics["train/tokens_per_s"],
    }


def bench_precision(cfg: RunConfig, plan: RuntimePlan) -> dict:
    """fp32 against bf16 for the engine and the learner, on this machine, in one process."""
    generate = {
        name: _generation_speed(cfg, plan.engine, dtype, GENERATE_BATCHES)
        for name, dtype in PRECISIONS
    }
    update = {name: _update_speed(cfg, name == "bf16") for name, _ in PRECISIONS}
    ratios = {
        f"generate_batch{b}": generate["bf16"][str(b)]["tokens_per_s"]
        / generate["fp32"][str(b)]["tokens_per_s"]
        for b in GENERATE_BATCHES
    }
    ratios["update"] = update["bf16"]["tokens_per_s"] / update["fp32"]["tokens_per_s"]
    faster = ratios[f"generate_batch{GENERATE_BATCHES[-1]}"] > 1
    faster_dtype = Dtype.bfloat16 if faster else Dtype.float32
    faster_learner = ratios["update"] > 1
    return {
        "benchmark": "precision",
        "model": cfg.model.name,
        "engine": plan.engine,
        "max_tokens": cfg.rollout.max_tokens,
        "update_shape": UPDATE_SHAPE,
        "generate": generate,
        "update": update,
        "bf16_over_fp32": ratios,
        "auto_dtype": plan.dtype,
        "auto_learner_bf16": plan.learner_bf16,
        "auto_dtype_is_faster": plan.dtype == faster_dtype,
        "auto_learner_is_faster": plan.learner_bf16 == faster_learner,
    }


def print_precision_table(result: dict) -> None:
    """A plain-text table of a precision benchmark result."""
    print(
        f"\nprecision benchmark: {result['model']} on {result['engine']}, "
        f"{result['max_tokens']}-token samples; learner update of "
        f"{result['update_shape']['samples_n']} x ({result['update_shape']['prompt']} + "
        f"{result['update_shape']['length']}) tokens"
    )
    print(f"{'measure':<22}{'fp32 tok/s':>12}{'bf16 tok/s':>12}{'bf16/fp32':>11}")
    for batch in GENERATE_BATCHES:
        fp32 = result["generate"]["fp32"][str(batch)]["tokens_per_s"]
        bf16 = result["generate"]["bf16"][str(batch)]["tokens_per_s"]
        print(f"{f'generate, batch {batch}':<22}{fp32:>12.1f}{bf16:>12.1f}{bf16 / fp32:>11.2f}")
    fp32, bf16 = (result["update"][p]["tokens_per_s"] for p in ("fp32", "bf16"))
    print(f"{'learner update':<22}{fp32:>12.1f}{bf16:>12.1f}{bf16 / fp32:>11.2f}")
    for what, key, chosen in (
        ("model.dtype", "auto_dtype_is_faster", result["auto_dtype"]),
        ("learner.bf16", "auto_learner_is_faster", result["auto_learner_bf16"]),
    ):
        verdict = "the faster one" if result[key] else "NOT the faster one"
        print(f"{what}=auto chose {chosen}: {verdict} here")
