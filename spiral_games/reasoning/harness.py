"""The reasoning harness: score checkpoints on math and GPQA benchmarks, offline, and report."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from spiral_games.config.choices import EngineKind
from spiral_games.config.schema import HarnessConfig, RolloutConfig
from spiral_games.errors import EngineUnavailable
from spiral_games.llm.engines.base import Engine, EngineSpec
from spiral_games.llm.engines.factory import build_engine
from spiral_games.llm.models import resolve_model
from spiral_games.llm.prompting import encode_user_message
from spiral_games.reasoning.data import CHOICE_BENCHMARKS, Problem, load_benchmark
from spiral_games.reasoning.grading import grade_choice, grade_math
from spiral_games.types import SamplingParams

log = logging.getLogger(__name__)
MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_SUFFIX = (
    "Please reason step by step, and put the letter of your final answer within \\boxed{}."
)


def _prompt_ids(tokenizer: Any, problem: Problem) -> list[int]:
    suffix = CHOICE_SUFFIX if problem.benchmark in CHOICE_BENCHMARKS else MATH_SUFFIX
    return encode_user_message(tokenizer, f"{problem.question}\n\n{suffix}")


def _engine(cfg: HarnessConfig, path: Path, sequences: int) -> Engine:
    """The configured engine, with `auto` resolved for this machine (config.hardware)."""
    from spiral_games.config.hardware import (
        choose_dtype,
        choose_engine,
        this_machine,
        vllm_unavailable,
    )

    hw = this_machine()
    reason = vllm_unavailable(hw) if cfg.engine != EngineKind.hf else None
    kind, fallback, why = choose_engine(cfg.engine, hw, reason)
    dtype, dtype_why, warning = choose_dtype(cfg.dtype, hw, kind)
    log.info("engine %s (%s), dtype %s (%s)", kind, why, dtype, dtype_why)
    if warning:
        log.warning(warning)
    rollout = RolloutConfig(max_model_len=cfg.max_model_len)
    spec = EngineSpec.from_rollout(
        kind, path, rollout, dtype=dtype, seed=cfg.seed, sequences=sequences
    )
    try:
        return build_engine(spec)
    except EngineUnavailable as exc:  # only this: a bug or an API mismatch stops the harness
        if fallback is None:
            raise
        log.warning("%s Falling back to transformers (engine=auto).", exc)
        return build_engine(dataclasses.replace(spec, kind=fallback))


def score_model(label: str, name: str, problems: list[Problem], cfg: HarnessConfig) -> list[dict]:
    """Per-sample records (prompt, response, extracted, gold, correct) for one model."""
    model = resolve_model(name)
    engine = _engine(cfg, model.path, len(problems) * cfg.n_samples)  # one batch of all
    params = SamplingParams(
        temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=None
    )
    budget = cfg.max_model_len - cfg.max_tokens
    prompts = [_prompt_ids(model.tokenizer, p)[-budget:] for p in problems]
    records = []
    try:
        repeated = [
            (p, ids) for p, ids in zip(problems, prompts, strict=True) for _ in range(cfg.n_samples)
        ]
        generations = engine.generate([ids for _, ids in repeated], params)
        for sample, ((problem, _), gen) in enumerate(zip(repeated, generations, strict=True)):
            grader = grade_choice if problem.benchmark in CHOICE_BENCHMARKS else grade_math
            grade = grader(gen.text, problem.gold)
            records.append(
                {
                    "model": label,
                    "checkpoint": name,
                    "benchmark": problem.benchmark,
                    "problem": problem.index,
                    "sample": sample % cfg.n_samples,
                    "prompt": problem.question,
                    "response": gen.text,
                    "extracted": grade.extracted,
                    "gold": problem.gold,
                    "correct": grade.correct,
                    "truncated": gen.truncated,
                }
            )
    finally:
        engine.close()
    return records


def summarize(records: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """pass@1 (mean over samples, then problems) and its standard error over problems."""
    per_problem: dict[tuple[str, str, int], list[bool]] = defaultdict(list)
    for r in records:
        per_problem[(r["model"], r["benchmark"], r["problem"])].append(r["correct"])
    grouped: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (model, bench, _), hits in per_problem.items():
        grouped[(model, bench)].append(sum(hits) / len(hits))
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (model, bench), accs in grouped.items():
        mean = sum(accs) / len(accs)
        var = sum((a - mean) ** 2 for a in accs) / (len(accs) - 1) if len(accs) > 1 else 0.0
        out[model][bench] = {
            "accuracy": mean,
            "stderr": math.sqrt(var / len(accs)),
            "problems": float(len(accs)),
        }
    return dict(out)


def run_harness(cfg: HarnessConfig) -> Path:
    """Score every model on every benchmark and write results.json, report.md and chart.png."""
    problems = [
        p
        for b in cfg.benchmarks
        for p in load_benchmark(b, Path(cfg.data_dir), cfg.limit, cfg.seed, cfg.hf_datasets)
    ]
    records = [
        r for label, name in cfg.models.items() for r in score_model(label, name, problems, cfg)
    ]
    summary = summarize(records)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"models": cfg.models, "summary": summary, "records": records}, indent=1)
    )
    (out / "report.md").write_text(markdown_table(summary, list(cfg.models), cfg.benchmarks))
    bar_chart(summary, list(cfg.models), cfg.benchmarks, out / "chart.png")
    return out


def markdown_table(summary: dict, models: list[str], benchmarks: list[str]) -> str:
    """Rows: benchmarks; columns: models (pass@1 ± s.e.), with deltas against the first model."""
    head = ["benchmark", *models, *[f"Δ {m} − {models[0]}" for m in models[1:]]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for bench in benchmarks:
        cells = [bench]
        for m in models:
            s = summary[m][bench]
            cells.append(f"{100 * s['accuracy']:.1f} ± {100 * s['stderr']:.1f}")
        base = summary[models[0]][bench]["accuracy"]
        cells += [f"{100 * (summary[m][bench]['accuracy'] - base):+.1f}" for m in models[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(summary: dict, models: list[str], benchmarks: list[str], path: Path) -> None:
    """Grouped bars of pass@1 per benchmark, one colour per model, with error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spiral_games.report.bars import grouped_bars, save_figure

    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(benchmarks)), 3.2))
    grouped_bars(
        ax,
        benchmarks,
        {m: [100 * summary[m][b]["accuracy"] for b in benchmarks] for m in models},
        {m: [100 * summary[m][b]["stderr"] for b in benchmarks] for m in models},
        "pass@1 (%)",
    )
    save_figure(fig, path)
