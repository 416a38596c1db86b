"""The rollout benchmark: (a) the raw engine, (b) the self-play RolloutWorker and (c) a naive
one-game-at-a-time transformers loop on the same games; (d) on vLLM, streamed games against
lock-step rounds."""

from __future__ import annotations

from spiral_games.config.choices import Batching, EngineKind
from spiral_games.config.schema import RunConfig
from spiral_games.llm.models import resolve_configured
from spiral_games.perf.measure import measure

MODES = (Batching.round, Batching.stream)


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

    eps, b_s = measure(lambda: worker.collect(episodes, seed=cfg.seed))
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

    a_tokens, a_s = measure(raw)
    d = _batching_comparison(worker, episodes, cfg.seed)
    worker.close()

    hf = build_engine(worker.cfg.engine_spec(EngineKind.hf, 0))
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
    naive_eps, c_s = measure(lambda: play_games(jobs, concurrency=1))
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
            policy.stream = mode == Batching.stream
            eps, seconds = measure(lambda: worker.collect(episodes, seed=seed + 7))
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


def print_rollout_table(result: dict) -> None:
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
