"""Benchmarks: `python launch/benchmark.py rollout [overrides...]` prints a table and writes JSON.

Every comparison is a ratio of figures measured in the same run, on the same model and settings.

rollout: (a) raw engine throughput at the worker's concurrency, on the prompts the games produced,
         (b) the self-play RolloutWorker (tokens/s, turns/s, games/s),
         (c) a naive one-game-at-a-time transformers loop; and the ratios b/a and b/c.
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

BENCHMARKS = ("rollout",)
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
        result = bench_rollout(cfg, episodes_flag(overrides))
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(cfg.output_dir) / f"benchmark_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print_table(result)
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
    from spiral_games.models import resolve_model
    from spiral_games.play import GameJob, play_games
    from spiral_games.registry import build_rules
    from spiral_games.rollout_worker import RolloutWorker, WorkerConfig

    concurrency = cfg.rollout.concurrent_games
    episodes = episodes or concurrency
    model = resolve_model(
        cfg.model.name, Path(cfg.model.cache_dir) if cfg.model.cache_dir else None
    )
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
