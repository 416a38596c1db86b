"""WeightSync on the CPU with real Ray, vLLM and DeepSpeed: after every push the workers score a
fixed batch exactly as the learner does, for each backend that runs on a CPU (file into hf,
file into vLLM, and spiral_gloo: vLLM's weight-transfer API over gloo), from one learner
process or a group of ranks; a restarted worker catches up with the latest version."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.actors.rollout_worker import WorkerConfig
from spiral_games.actors.runtime import init_ray
from spiral_games.actors.weight_sync import WeightSync
from spiral_games.config.hardware import plan_runtime
from spiral_games.config.schema import RolloutConfig
from spiral_games.learn.learner import Learner, LearnerSpec
from spiral_games.types import Sample, TrainBatch

from ..killing import kill_when_collecting, phase_dir_fixture  # noqa: F401 (a fixture)
from ..run.test_trainer import run_cfg

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow

PROMPTS, RESPONSES = [[1, 50, 60, 70], [5, 6]], [[80, 90, 100], [7, 8, 9, 10]]


def batch(step: int) -> TrainBatch:
    samples = tuple(
        Sample(tuple(p), tuple(r), tuple([-10.0] * len(r)), adv, "kuhn", 0, 0)
        for p, r, adv in zip(PROMPTS, RESPONSES, (1.0, -1.0), strict=True)
    )
    return TrainBatch(samples + samples, step=step)


def assert_workers_score_like(pool, expected, atol=2e-3):
    for worker_scores in pool.score(PROMPTS, RESPONSES):
        for theirs, mine in zip(worker_scores, expected, strict=True):
            assert theirs == pytest.approx(mine, abs=atol)


@pytest.fixture
def ray_shutdown():
    yield
    import ray

    ray.shutdown()


def start(tmp_path, engine, sync, workers=2, *extra):
    cfg = run_cfg(
        tmp_path,
        f"rollout.engine={engine}",
        f"rollout.weight_sync={sync}",
        "model.dtype=float32",
        "learner.bf16=false",
        f"rollout.num_workers={workers}",
        *extra,
    )
    init_ray(cfg.ray)
    return cfg, plan_runtime(cfg)


@pytest.mark.parametrize(
    ("engine", "sync", "backend"),
    [
        ("hf", "auto", "file"),
        pytest.param("vllm", "file", "file", marks=pytest.mark.vllm),
        pytest.param("vllm", "gloo", "spiral_gloo", marks=pytest.mark.vllm),
    ],
)
def test_workers_score_like_the_learner_after_every_push(
    engine, sync, backend, tiny, tmp_path, ray_shutdown
):
    if engine == "vllm":
        pytest.importorskip("vllm")
    cfg, plan = start(tmp_path, engine, sync)
    assert plan.weight_sync == backend
    learner = Learner(LearnerSpec.from_run(cfg, tiny.path, plan))
    pool = RolloutPool(
        WorkerConfig.from_run(cfg, tiny.path, plan), RolloutConfig(num_workers=2, worker_cpus=1)
    )
    weights = WeightSync(learner, pool, plan.weight_sync, ranks_per_worker=1)
    try:
        assert weights.backend == backend
        before = learner.logprobs(PROMPTS, RESPONSES)
        for version in (1, 2):  # the second push reuses the transfer group
            learner.update(batch(version))
            updated = learner.logprobs(PROMPTS, RESPONSES)
            assert updated != before
            assert weights.push(version) == [version, version]
            assert_workers_score_like(pool, updated)
            before = updated
    finally:
        weights.close()
        pool.shutdown()


@pytest.mark.vllm
def test_gloo_push_from_a_learner_group_of_two_ranks(tiny, tmp_path, ray_shutdown):
    """Rank 0 of a 2-rank ZeRO-3 group sends; rank 1 takes part in each layer's gather."""
    pytest.importorskip("vllm")
    from spiral_games.actors.learner_group import LearnerGroup

    cfg, plan = start(
        tmp_path,
        "vllm",
        "gloo",
        1,
        "learner.num_ranks=2",
        "learner.cpus_per_rank=0.5",
        "learner.micro_batch_size=2",
        "learner.zero_stage=3",
    )
    group = LearnerGroup(LearnerSpec.from_run(cfg, tiny.path, plan))
    pool = RolloutPool(
        WorkerConfig.from_run(cfg, tiny.path, plan), RolloutConfig(num_workers=1, worker_cpus=1)
    )
    weights = WeightSync(group, pool, plan.weight_sync, ranks_per_worker=1)
    try:
        group.update(batch(0))
        assert weights.push(1) == [1]
        assert_workers_score_like(pool, group.logprobs(PROMPTS, RESPONSES))
    finally:
        weights.close()
        pool.shutdown()
        group.shutdown()


def wait_for_restart(pool, index, old, timeout_s=300.0):
    """The incarnation of worker `index` once Ray has brought it back as a new process."""
    from ray.exceptions import ActorUnavailableError, RayActorError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            token = pool.incarnations([index])[0]
            if token != old:
                return token
        except (RayActorError, ActorUnavailableError):
            pass
        time.sleep(1.0)
    raise AssertionError(f"worker {index} was not restarted within {timeout_s} s")


@pytest.mark.vllm
def test_restarted_workers_catch_up_with_the_learner_over_gloo(
    tiny, tmp_path, caplog, ray_shutdown, phase_dir
):
    """Killed mid-collection: every worker gets the learner's weights at once, labelled with
    the step they come from (here ahead of the last push, as with train.push_every=2). Killed
    while idle: the next push re-forms the group instead of broadcasting to a dead rank."""
    pytest.importorskip("vllm")
    cfg, plan = start(tmp_path, "vllm", "gloo")  # after phase_dir: Ray's workers inherit it
    learner = Learner(LearnerSpec.from_run(cfg, tiny.path, plan))
    pool = RolloutPool(
        WorkerConfig.from_run(cfg, tiny.path, plan),
        RolloutConfig(num_workers=2, worker_cpus=1, max_worker_failures=3),
    )
    weights = WeightSync(learner, pool, plan.weight_sync, ranks_per_worker=1)
    try:
        learner.update(batch(0))
        assert weights.push(3) == [3, 3]
        learner.update(batch(1))
        weights.trained(4)  # not pushed: the workers still serve version 3
        killer = kill_when_collecting(pool, 1)
        with caplog.at_level(logging.WARNING):
            episodes = pool.collect(16, seed=1)
        killer.join()
        assert pool.failures == 1 and len(episodes) == 16
        assert {e.version for e in episodes} <= {3, 4} and 4 in {e.version for e in episodes}
        assert "re-forming the spiral_gloo transfer group" in caplog.text
        assert pool.versions() == [4, 4] and weights.version == 4
        assert_workers_score_like(pool, learner.logprobs(PROMPTS, RESPONSES))

        old = pool.incarnations([0])[0]
        os.kill(pool.locations()[0]["pid"], signal.SIGKILL)  # idle: no call is running
        wait_for_restart(pool, 0, old)
        learner.update(batch(2))
        assert weights.push(5) == [5, 5]
        assert_workers_score_like(pool, learner.logprobs(PROMPTS, RESPONSES))
    finally:
        weights.close()
        pool.shutdown()


@pytest.mark.vllm
def test_workers_that_fell_back_to_transformers_get_their_weights_through_a_file(
    tiny, tmp_path, caplog, ray_shutdown
):
    """rollout.engine=auto planned vLLM (so gloo), but vLLM cannot start here: the tiny model
    allows 8192 positions and the run asks for 16384. The worker serves with transformers, and
    WeightSync pushes through a file instead of a transfer group nobody can join."""
    pytest.importorskip("vllm")
    cfg, plan = start(tmp_path, "auto", "auto", 1, "rollout.max_model_len=16384")
    if plan.engine != "vllm":
        pytest.skip(f"auto does not try vLLM on this machine ({plan.engine_reason})")
    assert plan.weight_sync == "spiral_gloo"
    learner = Learner(LearnerSpec.from_run(cfg, tiny.path, plan))
    pool = RolloutPool(
        WorkerConfig.from_run(cfg, tiny.path, plan), RolloutConfig(num_workers=1, worker_cpus=1)
    )
    with caplog.at_level(logging.WARNING):
        weights = WeightSync(learner, pool, plan.weight_sync, ranks_per_worker=1)
    try:
        assert pool.engine_infos()[0]["engine"] == "hf"
        assert weights.backend == "file" and "pushing through a file" in caplog.text
        learner.update(batch(0))
        assert weights.push(1) == [1]
        assert_workers_score_like(pool, learner.logprobs(PROMPTS, RESPONSES))
    finally:
        weights.close()
        pool.shutdown()


def test_push_dirs_of_killed_runs_are_swept_and_live_ones_kept(tmp_path):
    """A SIGKILLed run cannot remove its /dev/shm push directory; the next run does."""
    import subprocess

    from spiral_games.actors.weight_sync import sweep_stale_push_dirs

    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid now runs nothing (reused pids only make the sweep keep a dir)
    dirs = {
        "live": tmp_path / f"spiral-weights-{os.getpid()}-abc",
        "dead": tmp_path / f"spiral-weights-{gone.pid}-def",
        "old_unnamed": tmp_path / "spiral-weights-xyz12345",
        "new_unnamed": tmp_path / "spiral-weights-qrs67890",
        "other": tmp_path / "unrelated",
    }
    for path in dirs.values():
        path.mkdir()
        (path / "weights.safetensors").write_bytes(b"x")
    os.utime(dirs["old_unnamed"], (time.time() - 2 * 86400,) * 2)
    removed = sweep_stale_push_dirs(tmp_path)
    assert sorted(removed) == sorted([dirs["dead"], dirs["old_unnamed"]])
    assert {name for name, path in dirs.items() if path.exists()} == {
        "live",
        "new_unnamed",
        "other",
    }
