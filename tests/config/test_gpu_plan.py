"""The 8-GPU plan of `experiment=spiral_qwen3_4b` (docs/gpu.md): it composes through the
`--cfg` command, every GPU has exactly one owner (a rollout worker or a learner rank), the
learner's batch shapes divide, and a cluster too small for the plan is refused with the fix."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spiral_games.config.compose import compose_run_config
from spiral_games.config.placement import check_fits, plan_resources
from spiral_games.errors import ConfigError

from ..conftest import REPO

CONF = REPO / "conf"
GPUS = 8  # SPIRAL's node: 8 x H100 (its README)


def _spiral(*overrides: str):
    return compose_run_config(CONF, ["experiment=spiral_qwen3_4b", *overrides])


@pytest.mark.slow  # a subprocess, a terminal or a training run
def test_the_cfg_command_prints_a_plan_that_fills_eight_gpus():
    out = subprocess.run(
        [sys.executable, "launch/selfplay.py", "experiment=spiral_qwen3_4b", "--cfg"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    rollout, learner = cfg["rollout"], cfg["learner"]
    assert rollout["num_workers"] * rollout["worker_gpus"] == 4
    assert learner["num_ranks"] * learner["gpus_per_rank"] == 4
    assert learner["zero_stage"] in (2, 3) and learner["gradient_checkpointing"] is True


def test_every_gpu_has_exactly_one_owner():
    plan = plan_resources(_spiral())
    assert plan.bundles() == [{"CPU": 4.0, "GPU": 1.0}] * 4  # what RolloutPool asks Ray for
    assert [r.bundle() for r in plan.learner] == [{"CPU": 4.0, "GPU": 1.0}] * 4
    assert not plan.learner_in_driver  # ranks are Ray actors, counted by Ray
    assert plan.gpus == GPUS and plan.cpus == 32
    owners = plan.gpu_owners()
    assert owners is not None  # whole GPUs only: Ray cannot pack two owners onto one
    assert len(owners) == len(set(owners)) == GPUS
    assert sorted({o.split("/")[0] for o in owners}) == ["learner", "rollout"]
    assert not plan.warnings
    assert check_fits(_spiral(), {"GPU": 8.0, "CPU": 32.0}) == plan


def test_learner_batch_shapes_divide():
    lc = _spiral().learner
    per_step = lc.micro_batch_size * lc.num_ranks
    # LearnerSpec -> DeepSpeed: gradient_accumulation_steps = minibatch // (micro x world)
    assert lc.minibatch_size % per_step == 0 and lc.minibatch_size // per_step == 16
    assert lc.batch_size % lc.minibatch_size == 0
    assert lc.batch_size % lc.num_ranks == 0  # a full batch leaves no sample out


def test_a_cluster_too_small_for_the_plan_is_refused_with_the_fix():
    cfg = _spiral()
    with pytest.raises(ConfigError) as gpus:
        check_fits(cfg, {"GPU": 4.0, "CPU": 64.0})
    message = str(gpus.value)
    assert "asks Ray for 8 GPUs" in message and "the cluster has 4" in message
    assert "rollout.num_workers" in message and "learner.num_ranks" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match=r"32 CPUs .* has 16\. Lower rollout.worker_cpus"):
        check_fits(cfg, {"GPU": 8.0, "CPU": 16.0})
    with pytest.raises(ConfigError, match="asks Ray for 8 GPUs"):
        check_fits(cfg, {"CPU": 64.0})  # a CPU-only cluster reports no GPU key


def test_one_learner_rank_runs_in_the_driver_and_a_gpu_plan_says_so():
    plan = plan_resources(_spiral("learner.num_ranks=1"))
    assert plan.learner_in_driver and plan.gpus == 4
    assert any("outside Ray's GPU accounting" in w for w in plan.warnings)
    cpu = plan_resources(compose_run_config(CONF, ["+games=[kuhn]"]))  # the CPU card command
    assert cpu.learner_in_driver and cpu.gpus == 0 and not cpu.warnings
    assert cpu.gpu_owners() == []


def test_cpu_learner_ranks_beside_gpu_workers_are_flagged_and_fractions_have_no_layout():
    plan = plan_resources(_spiral("learner.gpus_per_rank=0"))
    assert any("train on the CPU" in w for w in plan.warnings)
    half = plan_resources(_spiral("learner.gpus_per_rank=0.5"))  # Ray may pack two per GPU
    assert half.gpus == 6 and half.gpu_owners() is None


def test_the_14b_override_keeps_the_plan_and_needs_zero_3():
    """docs/gpu.md: `model.name=Qwen/Qwen3-14B-Base learner.zero_stage=3` on the same 8 GPUs."""
    cfg = _spiral("model.name=Qwen/Qwen3-14B-Base", "learner.zero_stage=3")
    assert cfg.learner.zero_stage == 3
    plan = plan_resources(cfg)
    assert plan.gpus == GPUS and len(set(plan.gpu_owners() or [])) == GPUS
