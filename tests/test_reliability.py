"""A rollout actor killed mid-collection: Ray restarts it with the current weights, the step's
episodes are complete and counted once; past the failure limit the run stops clearly."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from spiral_games.compose import compose_run_config
from spiral_games.rollout_pool import RolloutError, RolloutPool
from spiral_games.rollout_worker import WorkerConfig

from .conftest import REPO


@pytest.fixture
def pool_factory(tiny):
    from spiral_games.config import RayConfig
    from spiral_games.ray_runtime import init_ray

    init_ray(RayConfig(num_cpus=2))
    cfg = compose_run_config(
        REPO / "conf",
        [
            "+games=[kuhn,tictactoe]",
            "rollout.engine=hf",
            "model=tiny-random",
            "rollout.max_tokens=48",
            "rollout.concurrent_games=4",
        ],
    )
    pools = []

    def make(max_failures):
        pool = RolloutPool(
            WorkerConfig.from_run(cfg, tiny.path), 2, worker_cpus=1, max_failures=max_failures
        )
        pools.append(pool)
        return pool

    yield make
    import ray

    for pool in pools:
        with contextlib.suppress(Exception):  # a pool whose actors died may not close cleanly
            pool.shutdown()
    ray.shutdown()


def kill_soon(pool, index, delay_s):
    pid = pool.locations()[index]["pid"]
    timer = threading.Timer(delay_s, os.kill, (pid, signal.SIGKILL))
    timer.start()
    return timer


def push_perturbed(pool, tiny, tmp_path, version):
    state = load_file(str(tiny.path / "model.safetensors"))
    torch.manual_seed(version)
    save_file(
        {k: v + 0.01 * torch.randn_like(v) for k, v in state.items()},
        str(tmp_path / "w.safetensors"),
    )
    pool.push_weights(str(tmp_path / "w.safetensors"), version)


def test_killed_worker_is_restarted_with_current_weights_and_the_step_completes(
    pool_factory, tiny, tmp_path, caplog
):
    pool = pool_factory(max_failures=2)
    push_perturbed(pool, tiny, tmp_path, version=5)
    timer = kill_soon(pool, 1, delay_s=1.0)
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        episodes = pool.collect(24, seed=3)
    timer.join()
    assert pool.failures == 1
    assert len(episodes) == 24
    assert all(e.reason and e.turns for e in episodes)  # only finished games
    assert {e.version for e in episodes} == {5}  # the restarted worker got the pushed weights
    keys = [(e.game, e.seed) for e in episodes]
    assert len(set(keys)) == len(keys)  # nothing counted twice
    assert "Rollout worker 1 died" in caplog.text and "version 5" in caplog.text
    assert time.perf_counter() - start < 600


def test_workers_dying_past_the_limit_stop_with_a_clear_error(pool_factory, tiny, tmp_path):
    pool = pool_factory(max_failures=0)
    timer = kill_soon(pool, 0, delay_s=1.0)
    with pytest.raises(RolloutError, match=r"max_worker_failures=0.*train.resume=true"):
        pool.collect(24, seed=4)
    timer.join()


@pytest.mark.slow
def test_trainer_killed_at_random_points_resumes_from_the_last_complete_checkpoint(tiny, tmp_path):
    import json
    import random
    import subprocess
    import sys
    from pathlib import Path

    args = [
        sys.executable,
        "launch/selfplay.py",
        "+games=[kuhn]",
        "model=tiny-random",
        "rollout.engine=hf",
        "rollout.max_tokens=16",
        "train.steps=8",
        "train.checkpoint_every=1",
        "train.wandb_mode=disabled",
        "ray.num_cpus=2",
        f"output_dir={tmp_path}",
    ]
    rng = random.Random(0)
    kills = 0
    for attempt in range(4):
        extra = ["train.resume=true"] if attempt else []
        proc = subprocess.Popen(
            [*args, *extra],
            cwd=REPO,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=rng.uniform(10, 40) if attempt < 3 else 600)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole job: driver, Ray, workers
            proc.wait()
            kills += 1
            # Ray's daemons detach from the job's session; stop what the killed job left.
            subprocess.run(
                [str(Path(sys.executable).parent / "ray"), "stop", "--force"],
                capture_output=True,
                timeout=120,
            )
        if proc.returncode == 0:
            break
    assert proc.returncode == 0
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").open()]
    assert steps == list(range(1, 9))  # replayed steps are not logged twice
    state = json.loads(
        (tmp_path / "checkpoints" / "step_000008" / "trainer_state.json").read_text()
    )
    assert state["step"] == 8 and state["version"] == 8
    assert kills >= 1
