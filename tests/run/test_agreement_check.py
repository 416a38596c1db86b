"""The start-up agreement check on real engines and a real learner: it passes where both serve
one model, switches an `auto` bf16 engine to fp32 when it disagrees, and stops with one clear
error when the precision was forced or the engine serves other weights."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.actors.rollout_worker import WorkerConfig
from spiral_games.config.hardware import plan_runtime, probe_hardware
from spiral_games.errors import EngineError
from spiral_games.learn.learner import Learner, LearnerSpec
from spiral_games.run.agreement_check import agreed_pool

from ..conftest import REPO
from ..tiny_run import tiny_config

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow

SAMPLES = REPO / "tests" / "fixtures" / "cpuinfo"
# A CPU with native bf16 (Zen 4, no AMX): `auto` serves bf16 there, so the switch path runs.
ZEN4 = probe_hardware((SAMPLES / "amd_zen4_avx512_bf16.txt").read_text(), "x86_64", 2, 0)


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from spiral_games.actors.runtime import init_ray
    from spiral_games.config.schema import RayConfig

    init_ray(RayConfig(num_cpus=2))
    yield
    ray.shutdown()


def config(*overrides):
    return tiny_config(
        "rollout.engine=hf", "learner.bf16=false", *overrides, rollout=False, trainer=False
    )


@pytest.fixture(scope="module")
def learner(tiny):
    """One fp32 learner on tiny-random's weights, shared: the checks only read from it."""
    cfg = config()
    return Learner(LearnerSpec.from_run(cfg, tiny.path, plan_runtime(cfg, vllm_installed=False)))


def setup(tiny, learner, *overrides, engine_weights=None, hw=None):
    cfg = config(*overrides)
    plan = plan_runtime(cfg, hw, vllm_installed=False)
    assert not plan.learner_bf16  # what the shared learner runs
    worker_cfg = WorkerConfig.from_run(cfg, engine_weights or tiny.path, plan)
    return cfg, plan, learner, worker_cfg


def check(cfg, plan, learner, worker_cfg, tiny):
    return agreed_pool(
        RolloutPool(worker_cfg, cfg.rollout),
        worker_cfg,
        learner,
        tiny.tokenizer,
        plan.learner_bf16,
        cfg.model.dtype,
        lambda switched: RolloutPool(switched, cfg.rollout),
    )


def test_a_disagreeing_auto_bf16_engine_is_switched_to_fp32_and_said_so(tiny, learner, local_ray):
    # a tolerance below bf16's rounding makes the bf16 engine disagree with the fp32 learner
    cfg, plan, learner, worker_cfg = setup(
        tiny, learner, "model.dtype=auto", "rollout.agreement_tol_reduced=1e-6", hw=ZEN4
    )
    assert plan.dtype == "bfloat16"
    pool, used, lines = check(cfg, plan, learner, worker_cfg, tiny)
    pool.shutdown()
    assert used.dtype == "float32"
    assert "DISAGREE" in lines[0] and "engine bfloat16" in lines[0]
    assert "auto switched from bfloat16" in lines[1]
    assert "engine float32 vs learner float32: agree" in lines[2]


def test_a_forced_bf16_engine_that_disagrees_is_one_error_naming_the_fix(tiny, learner, local_ray):
    cfg, plan, learner, worker_cfg = setup(
        tiny, learner, "model.dtype=bfloat16", "rollout.agreement_tol_reduced=1e-6"
    )
    with pytest.raises(EngineError, match=r"disagree at start.*Set model.dtype=float32"):
        check(cfg, plan, learner, worker_cfg, tiny)


def test_an_engine_serving_other_weights_is_one_error(tiny, learner, local_ray, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny.path, other)
    state = load_file(str(other / "model.safetensors"))
    torch.manual_seed(0)
    save_file(
        {k: v + 0.05 * torch.randn_like(v) for k, v in state.items()},
        str(other / "model.safetensors"),
    )
    cfg, plan, learner, worker_cfg = setup(tiny, learner, engine_weights=other)
    assert plan.dtype == "float32"  # nothing to switch to: the error says what is wrong
    with pytest.raises(EngineError, match="does not serve the learner's weights"):
        check(cfg, plan, learner, worker_cfg, tiny)


def test_the_check_can_be_turned_off(tiny, learner):
    cfg, _, learner, worker_cfg = setup(tiny, learner, "rollout.agreement_tokens=0")
    no_pool = object()  # nothing is asked of the engines
    pool, used, lines = agreed_pool(
        no_pool, worker_cfg, learner, tiny.tokenizer, False, cfg.model.dtype, None
    )
    assert pool is no_pool and used is worker_cfg
    assert lines == ["agreement check: off (rollout.agreement_tokens=0)"]
