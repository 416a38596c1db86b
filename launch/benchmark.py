"""Benchmarks: `python launch/benchmark.py {rollout,learner,sync,iteration} [overrides]` prints a
table and writes JSON to output_dir.

Every comparison is a ratio of figures measured in the same run, on the same model and settings.

rollout: (a) raw engine throughput at the worker's concurrency, on the prompts the games produced,
         (b) the self-play RolloutWorker (tokens/s, turns/s, games/s),
         (c) a naive one-game-at-a-time transformers loop; and the ratios b/a and b/c.
learner: tokens/s of a DeepSpeed update step against plain PyTorch on the same model, batch,
         optimizer and loss, in fp32 and with bf16 autocast; and their ratio.
sync:    the trainer's weight push (export to /dev/shm + load into `rollout.num_workers` Ray
         actors) against an in-process copy of the same tensors; and their ratio.
iteration: a short real training run (`train.steps`, default 3, eval and checkpoint every step);
         each phase's share of a step: rollout, advantage, update, push, eval, checkpoint and
         the rest (orchestration, metrics, transcripts), averaged over the steps after the first.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from spiral_games.compose import compose_run_config  # noqa: E402
from spiral_games.config import RunConfig  # noqa: E402
from spiral_games.errors import SpiralError  # noqa: E402
from spiral_games.learner import LearnerSpec  # noqa: E402
from spiral_games.models import resolve_configured  # noqa: E402
from spiral_games.types import TrainBatch  # noqa: E402

BENCHMARKS = ("rollout", "learner", "sync", "iteration")
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
        if name == "rollout":
            result = bench_rollout(cfg, episodes_flag(overrides))
        elif name == "learner":
            result = bench_learner(cfg)
        elif name == "sync":
            result = bench_sync(cfg)
        else:
            result = bench_iteration(cfg, overrides)
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(cfg.output_dir) / f"benchmark_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    printers = {
        "rollout": print_table,
        "learner": print_learner_table,
        "sync": print_sync_table,
        "iteration": print_iteration_table,
    }
    printers[name](result)
    print(f"json: {out}")
    return 0


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
    from spiral_games.engines.base import build_engine
    from spiral_games.llm_policy import LLMPolicy
    from spiral_games.play import GameJob, play_games
    from spiral_games.registry import build_rules
    from spiral_games.rollout_worker import RolloutWorker, WorkerConfig

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
    worker.close()

    hf = build_engine(
        "hf", model.path, dtype=cfg.model.dtype, max_model_len=cfg.rollout.max_model_len
    )
    name = next(iter(cfg.games))
    naive_policy = LLMPolicy(
        hf, model.tokenizer, params, {name: cfg.games[name].prompt_style}, cfg.rollout.max_model_len
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
        "engine": cfg.rollout.engine,
        "dtype": cfg.model.dtype,
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
    }


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


def _synthetic_batch(cfg: RunConfig, vocab: int) -> TrainBatch:
    """`learner.batch_size` samples of 128 prompt and min(128, max_tokens) response tokens."""
    import torch

    from spiral_games.types import Sample, TrainBatch

    g = torch.Generator().manual_seed(cfg.seed)
    length = min(128, cfg.rollout.max_tokens)
    samples = tuple(
        Sample(
            tuple(torch.randint(0, vocab, (128,), generator=g).tolist()),
            tuple(torch.randint(0, vocab, (length,), generator=g).tolist()),
            (-10.0,) * length,
            1.0 if i % 2 else -1.0,
            "bench",
            0,
            0,
        )
        for i in range(cfg.learner.batch_size)
    )
    return TrainBatch(samples, step=0)


def _plain_torch_update(spec: LearnerSpec, batch: TrainBatch, bf16: bool) -> tuple[int, float]:
    """The learner's update without DeepSpeed: same loss, AdamW, clipping and batch shape."""
    import torch
    from transformers import AutoModelForCausalLM

    from spiral_games.logprobs import pack_sequences, token_logprobs
    from spiral_games.loss import policy_loss

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

    from spiral_games.learner import Learner

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


def bench_sync(cfg: RunConfig, repeats: int = 3) -> dict:
    """Median of `repeats` trainer-style pushes vs. median in-process copies of the same tensors."""
    import statistics
    import tempfile

    import torch

    from spiral_games.learner import Learner
    from spiral_games.ray_runtime import init_ray
    from spiral_games.rollout_pool import RolloutPool
    from spiral_games.rollout_worker import WorkerConfig

    model = resolve_configured(cfg.model)
    init_ray(cfg.ray)
    learner = Learner(LearnerSpec.from_run(cfg, model.path))
    r = cfg.rollout
    pool = RolloutPool(
        WorkerConfig.from_run(cfg, model.path),
        r.num_workers,
        r.worker_cpus,
        r.worker_gpus,
        r.placement_strategy,
    )
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    push_dir = Path(tempfile.mkdtemp(prefix="spiral-bench-", dir=shm))
    try:
        exports, pushes = [], []
        for version in range(1, repeats + 2):  # the first round is a warm-up
            t0 = time.perf_counter()
            path = learner.export_weights(push_dir / "weights.safetensors")
            t1 = time.perf_counter()
            pool.push_weights(str(path), version)
            t2 = time.perf_counter()
            if version > 1:
                exports.append(t1 - t0)
                pushes.append(t2 - t0)
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
        pool.shutdown()
        learner.shutdown()
        for leftover in push_dir.glob("*"):
            leftover.unlink()
        push_dir.rmdir()
    push_s, copy_s = statistics.median(pushes), statistics.median(copy_times[1:])
    return {
        "benchmark": "sync",
        "model": cfg.model.name,
        "engine": r.engine,
        "workers": r.num_workers,
        "megabytes": nbytes / 1e6,
        "push_seconds": push_s,
        "export_seconds": statistics.median(exports),
        "load_seconds": push_s - statistics.median(exports),
        "copy_seconds": copy_s,
        "ratio_push_over_copy": push_s / copy_s,
        "target_ratio": 2.0,
    }


def print_sync_table(result: dict) -> None:
    """A plain-text table of a sync benchmark result."""
    print(
        f"\nsync benchmark: {result['model']} ({result['megabytes']:.0f} MB) to "
        f"{result['workers']} {result['engine']} worker(s)"
    )
    print(f"{'measure':<34}{'seconds':>10}")
    for label, key in (
        ("push (export + load), median", "push_seconds"),
        ("  export to /dev/shm", "export_seconds"),
        ("  load into the workers", "load_seconds"),
        ("in-process copy, median", "copy_seconds"),
    ):
        print(f"{label:<34}{result[key]:>10.4f}")
    ratio, target = result["ratio_push_over_copy"], result["target_ratio"]
    verdict = "ok" if ratio <= target else f"MISSED by {ratio / target:.1f}x"
    print(f"ratio push/copy {ratio:.1f}  (target <= {target}: {verdict})")


def bench_iteration(cfg: RunConfig, overrides: list[str]) -> dict:
    """Run the real trainer briefly and split each step's wall time into its phases."""
    import dataclasses
    import shutil

    from spiral_games.trainer import PhaseClock, train

    train_cfg = dataclasses.replace(
        cfg.train,
        steps=cfg.train.steps if any(o.startswith("train.steps=") for o in overrides) else 3,
        checkpoint_every=1,
        wandb_mode="disabled",
    )
    eval_cfg = dataclasses.replace(cfg.eval, every=1, games=cfg.eval.games)
    run_dir = Path(cfg.output_dir) / "iteration_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run = dataclasses.replace(cfg, train=train_cfg, eval=eval_cfg, output_dir=str(run_dir))
    train(run)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    steps = [r for r in rows if r["step"] >= 1]
    measured = steps[1:] or steps  # the first step pays one-off warm-up costs
    phases = [*PhaseClock.PHASES, "other"]
    seconds = {p: sum(r[f"time/{p}"] for r in measured) / len(measured) for p in phases}
    step_s = sum(r["time/step"] for r in measured) / len(measured)
    shares = {p: s / step_s for p, s in seconds.items()}
    return {
        "benchmark": "iteration",
        "model": cfg.model.name,
        "engine": cfg.rollout.engine,
        "steps_measured": len(measured),
        "step_seconds": step_s,
        "seconds": seconds,
        "shares": shares,
        "overhead_share": shares["push"] + shares["other"],
        "target_overhead_share": 0.10,
    }


def print_iteration_table(result: dict) -> None:
    """A plain-text table of an iteration benchmark result."""
    print(
        f"\niteration benchmark: {result['model']} on {result['engine']}, "
        f"{result['step_seconds']:.1f} s per step (mean of {result['steps_measured']})"
    )
    print(f"{'phase':<12}{'seconds':>10}{'share':>9}")
    for phase, seconds in result["seconds"].items():
        print(f"{phase:<12}{seconds:>10.2f}{result['shares'][phase]:>9.1%}")
    share, target = result["overhead_share"], result["target_overhead_share"]
    verdict = "ok" if share <= target else f"MISSED by {share - target:.1%}"
    print(f"push + orchestration + logging: {share:.1%}  (target <= {target:.0%}: {verdict})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
