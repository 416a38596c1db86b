"""A rollout actor killed mid-collection: Ray restarts it with the current weights, the step's
episodes are complete and counted once; past the failure limit the run stops clearly."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.actors.rollout_worker import WorkerConfig
from spiral_games.config.schema import RolloutConfig
from spiral_games.errors import RolloutError
from spiral_games.faults import POINTS
from spiral_games.run.checkpoint import latest_checkpoint

from ..conftest import REPO
from ..killing import kill_when_collecting, phase_dir_fixture  # noqa: F401 (a fixture)
from ..tiny_run import tiny_config, tiny_overrides

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow


@pytest.fixture
def pool_factory(tiny, phase_dir):
    from spiral_games.actors.runtime import init_ray
    from spiral_games.config.schema import RayConfig

    init_ray(RayConfig(num_cpus=2))  # after phase_dir: Ray's workers inherit its variable
    cfg = tiny_config(
        "rollout.max_tokens=48",
        "rollout.concurrent_games=4",
        games="kuhn,tictactoe",
        trainer=False,
    )
    pools = []

    def make(max_failures):
        pool = RolloutPool(
            WorkerConfig.from_run(cfg, tiny.path),
            RolloutConfig(num_workers=2, worker_cpus=1, max_worker_failures=max_failures),
        )
        pools.append(pool)
        return pool

    yield make
    import ray

    for pool in pools:
        with contextlib.suppress(Exception):  # a pool whose actors died may not close cleanly
            pool.shutdown()
    ray.shutdown()


def push_perturbed(pool, tiny, tmp_path, version):
    state = load_file(str(tiny.path / "model.safetensors"))
    torch.manual_seed(version)
    save_file(
        {k: v + 0.01 * torch.randn_like(v) for k, v in state.items()},
        str(tmp_path / "w.safetensors"),
    )
    pool.push_weights(str(tmp_path / "w.safetensors"), version)


def test_killed_worker_is_restarted_with_current_weights_and_the_step_completes(
    pool_factory, tiny, tmp_path, caplog, reliability
):
    pool = pool_factory(max_failures=2)
    push_perturbed(pool, tiny, tmp_path, version=5)
    killer = kill_when_collecting(pool, 1)
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        episodes = pool.collect(24, seed=3)
    killer.join()
    assert pool.failures == 1
    assert len(episodes) == 24
    assert all(e.reason and e.turns for e in episodes)  # only finished games
    assert {e.version for e in episodes} == {5}  # the restarted worker got the pushed weights
    keys = [(e.game, e.seed) for e in episodes]
    assert len(set(keys)) == len(keys)  # nothing counted twice
    assert "Rollout worker 1 died" in caplog.text and "version 5" in caplog.text
    assert time.perf_counter() - start < 600
    reliability.update(
        fault="Rollout worker (Ray actor process) SIGKILLed mid-collection",
        tries=1,
        outcome="Ray restarts it with the current weights version; the step's episodes are "
        "complete, none counted twice; the log names the failure",
        order=4,
    )


def test_workers_dying_past_the_limit_stop_with_a_clear_error(
    pool_factory, tiny, tmp_path, reliability
):
    pool = pool_factory(max_failures=0)
    killer = kill_when_collecting(pool, 0)
    with pytest.raises(RolloutError, match=r"max_worker_failures=0.*train.resume=true"):
        pool.collect(24, seed=4)
    killer.join()
    reliability.update(
        fault="Rollout workers dying past rollout.max_worker_failures",
        tries=1,
        outcome="RolloutError naming the limit and train.resume=true (the trainer then "
        "checkpoints every completed step)",
        order=4,
    )


KILL_STEPS = 8
KILL_ARGS = [f"train.steps={KILL_STEPS}", "train.checkpoint_every=1"]


def trainer_argv(run_dir, *extra):
    """launch/selfplay.py's command line for a tiny KILL_STEPS-step run into `run_dir`."""
    return [
        sys.executable,
        "launch/selfplay.py",
        *tiny_overrides(*KILL_ARGS, *extra, output_dir=run_dir),
    ]


def run_trainer(run_dir, log_path, *extra, kill_at=None):
    """One trainer process (its own session, like a batch job); returns its exit code.

    Its Ray instance lives under a private RAY_TMPDIR, so what a killed job leaves behind can
    be stopped without touching any other Ray on the machine (no global `ray stop`).
    """
    ray_tmp = tempfile.mkdtemp(prefix="rk", dir="/tmp")  # short: Ray's socket paths are capped
    env = {**os.environ, "SPIRAL_KILL_AT": kill_at or "", "RAY_TMPDIR": ray_tmp}
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(
                trainer_argv(run_dir, *extra),
                cwd=REPO,
                env=env,
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=600,
            )
    finally:
        kill_processes_mentioning(ray_tmp)  # Ray's daemons leave the killed job's session
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return proc.returncode


def other_processes():
    """(pid, /proc/<pid>/stat, command line) of every process but this one."""
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        try:
            stat = (proc_dir / "stat").read_text()
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        yield int(proc_dir.name), stat, cmdline


def kill_processes_mentioning(text):
    for pid, _stat, cmdline in other_processes():
        if text in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def logged_steps(run_dir):
    path = run_dir / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.open()] if path.is_file() else []


def checkpoint_files(run_dir, step):
    ckpt = run_dir / "checkpoints" / f"step_{step:06d}"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    optimizer = torch.load(ckpt / "optimizer.pt", weights_only=True)
    return state, load_file(str(ckpt / "model.safetensors")), optimizer


def assert_same_tensors(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_tensors(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tensors(x, y)
    else:
        assert a == b


@pytest.mark.slow
def test_sigkills_in_every_phase_resume_to_exactly_the_uninterrupted_result(
    tiny, tmp_path, reliability
):
    """SIGKILL the whole job 5 times - in each of rollout, update, weight push and checkpoint
    write, and once more in a random one, at random hits - resuming after each. (Each kill is
    a trainer process of its own, about a minute on 2 cores: five cover every point.) The final
    checkpoint must equal, bit for bit, the one of a run that was never killed: step, version,
    RAE baselines, RNG and data-sampling state, weights and optimizer state were all restored
    as saved."""
    reference = tmp_path / "reference"
    assert run_trainer(reference, tmp_path / "reference.log") == 0

    rng = random.Random(2026)
    points = [*POINTS, rng.choice(POINTS)]
    schedule = [(point, rng.randint(1, 2)) for point in points]
    rng.shuffle(schedule)
    run_dir = tmp_path / "killed"
    outcomes = []
    for attempt, (point, hit) in enumerate(schedule):
        log_path = tmp_path / f"attempt{attempt}.log"
        resume = ["train.resume=true"] if attempt else []
        code = run_trainer(run_dir, log_path, *resume, kill_at=f"{point}:{hit}")
        assert code == -signal.SIGKILL, f"attempt {attempt} ({point}:{hit}) exited {code}"
        last_logged = max(logged_steps(run_dir), default=0)
        torn = list((run_dir / "checkpoints").glob("step_*.tmp-*"))
        found = latest_checkpoint(run_dir)
        saved = found[1].step if found else 0
        # At most the step in flight is lost: a step is logged only once it is checkpointed.
        assert saved == last_logged
        if point == "checkpoint_write":
            assert torn  # the write that was killed midway, never renamed into place
        outcomes.append((point, hit, saved))
        if attempt:
            text = log_path.read_text()
            assert "Resuming" in text or "starting from step 0" in text
    assert {p for p, _, _ in outcomes} == set(POINTS)

    assert run_trainer(run_dir, tmp_path / "final.log", "train.resume=true") == 0
    logs = [f"attempt{a}.log" for a in range(1, len(schedule))] + ["final.log"]
    assert any("never finished" in (tmp_path / name).read_text() for name in logs)
    # replayed steps are not logged twice
    assert logged_steps(run_dir) == list(range(1, KILL_STEPS + 1))
    state, weights, optimizer = checkpoint_files(run_dir, KILL_STEPS)
    ref_state, ref_weights, ref_optimizer = checkpoint_files(reference, KILL_STEPS)
    assert_same_tensors(weights, ref_weights)
    assert_same_tensors(optimizer, ref_optimizer)
    assert state == ref_state  # step, version, RAE baselines, every RNG
    reliability.update(
        fault="Trainer job SIGKILLed (rollout, update, weight push, checkpoint write), resumed",
        tries=len(outcomes),
        outcome="resumes from the last complete checkpoint, at most the step in flight lost; "
        "torn writes reported and skipped; final weights, optimizer, RAE baselines and RNG "
        "bit-identical to an uninterrupted run",
        order=1,
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["continue", "stop"])
def test_node_removed_mid_run_continues_or_stops_with_a_checkpoint(
    mode, tiny, tmp_path, caplog, reliability
):
    """A 2-node Ray cluster loses the node of one rollout worker after step 1."""
    import ray
    from ray.cluster_utils import Cluster

    from spiral_games.run.trainer import train

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    doomed = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    cfg = tiny_config(
        "rollout.num_workers=2",
        "rollout.worker_cpus=1",
        "rollout.placement_strategy=STRICT_SPREAD",
        f"rollout.on_node_loss={mode}",
        "train.steps=4",
        "train.checkpoint_every=10",  # the stop path itself must write the checkpoint
        "train.wandb_mode=disabled",
        "eval.points=0",
        f"ray.address={cluster.address}",  # the cluster's Ray, not a local ray.num_cpus=2
        output_dir=tmp_path,
        trainer=False,
    )

    def remove_after_first_step():
        deadline = time.monotonic() + 300
        while not logged_steps(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        cluster.remove_node(doomed)

    remover = threading.Thread(target=remove_after_first_step)
    remover.start()
    try:
        with caplog.at_level(logging.WARNING):
            if mode == "continue":
                train(cfg)
            else:
                with pytest.raises(RolloutError, match=r"left the cluster.*train.resume=true"):
                    train(cfg)
    finally:
        remover.join()
        ray.shutdown()
        cluster.shutdown()
    steps = logged_steps(tmp_path)
    found = latest_checkpoint(tmp_path)
    assert found is not None
    if mode == "continue":
        assert steps == [1, 2, 3, 4] and found[1].step == 4
        assert "left the cluster; continuing with 1 worker(s)" in caplog.text
    else:
        assert steps and found[1].step == steps[-1]  # every completed step is kept
    reliability.update(
        fault=f"Ray node of a rollout worker removed mid-run (on_node_loss={mode})",
        tries=1,
        outcome=(
            "run finishes all steps on the remaining node"
            if mode == "continue"
            else "run stops with RolloutError naming train.resume=true; last step checkpointed"
        ),
        order=3,
    )


def descendants(pid):
    """Live (non-zombie) descendants of `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    states = {}
    for proc_dir in Path("/proc").iterdir():
        if proc_dir.name.isdigit():
            try:
                stat = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            states[int(proc_dir.name)] = stat[0]
            children.setdefault(int(stat[1]), []).append(int(proc_dir.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return [p for p in found if states.get(p) not in (None, "Z")]


def alive(pids):
    out = []
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(p)
    return out


def test_vllm_engine_processes_die_with_a_sigkilled_owner(tiny, reliability):
    """vLLM runs its engine in child processes; if the rollout worker that owns them is
    SIGKILLed they must not live on (burning CPU, holding accelerator memory)."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from spiral_games.config.schema import RolloutConfig\n"
        "from spiral_games.llm.engines.base import EngineSpec\n"
        "from spiral_games.llm.engines.vllm import VLLMEngine\n"
        "rollout = RolloutConfig(max_model_len=256)\n"
        "spec = EngineSpec.from_rollout('vllm', Path(sys.argv[1]), rollout, dtype='float32', "
        "seed=0)\n"
        "engine = VLLMEngine(spec)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(tiny.path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in owner.stdout:  # vLLM logs to stdout too
            if line.strip() == "ready":
                break
        engine_procs = descendants(owner.pid)
        assert engine_procs  # vLLM's EngineCore (and its worker) are child processes
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 30
        while alive(engine_procs) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not alive(engine_procs), f"orphaned engine processes: {alive(engine_procs)}"
    finally:
        owner.kill()
        for p in alive(descendants(owner.pid)):
            os.kill(p, signal.SIGKILL)
    reliability.update(
        fault="Process owning a vLLM engine SIGKILLed (a crashed rollout worker)",
        tries=1,
        outcome="vLLM's engine-core and worker processes exit within seconds, no orphans",
        order=4,
    )


def processes_of(session: int, text: str) -> list[str]:
    """Processes still in the job's session, or mentioning its private Ray temp dir (Ray's
    daemons start sessions of their own)."""
    found = []
    for pid, stat, cmdline in other_processes():
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session
        if fields[0] != "Z" and (int(fields[3]) == session or text in cmdline):
            found.append(f"{pid}: {cmdline[:120]}")
    return found


STOP_ARGS = ["train.steps=200", "train.checkpoint_every=1000"]


def test_sigterm_stops_the_run_cleanly_and_leaves_no_process_behind(tiny, tmp_path, reliability):
    """SIGTERM to a training run mid-way, with no checkpoint due before step 1000: it saves the
    steps it completed, exits with 130 saying how to resume, and no process of its own (actors,
    engines) or of its Ray instance survives."""
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are capped
    run_dir = tmp_path / "run"
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            # checkpoints only at the end: the completed steps are saved by the SIGTERM itself
            trainer_argv(run_dir, *STOP_ARGS),
            cwd=REPO,
            env={**os.environ, "RAY_TMPDIR": ray_tmp},
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 400
        while max(logged_steps(run_dir), default=0) < 2:  # mid-training: actors and engines up
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never logged step 2"
            time.sleep(0.5)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=180) == 130, log_path.read_text()[-3000:]
        deadline = time.monotonic() + 30  # Ray's daemons stop asynchronously
        while (left := processes_of(proc.pid, ray_tmp)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, left
        text = log_path.read_text()
        assert "interrupted" in text and "train.resume=true" in text
        found = latest_checkpoint(run_dir)
        assert found is not None and found[1].step >= max(logged_steps(run_dir)) >= 2
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_processes_mentioning(ray_tmp)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    reliability.update(
        fault="SIGTERM (or Ctrl-C) to a training run",
        tries=1,
        outcome="completed steps checkpointed, exit 130 with the resume command, no process of "
        "the job or its Ray left",
        order=6,
    )
