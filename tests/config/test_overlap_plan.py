"""Overlapped collection in the config and the runtime plan: `train.max_staleness` and its
bound, `rollout.batching`, and the cores split between rollout and the learner (applied by
`spiral_games.process_setup`, tested in tests/test_process_setup.py)."""

from __future__ import annotations

import dataclasses

import pytest

from spiral_games.config.compose import compose_run_config
from spiral_games.config.hardware import Hardware, cpu_slice, plan_runtime, probe_hardware
from spiral_games.config.schema import ASYNC_TIS_CAP, RolloutConfig, TrainConfig
from spiral_games.errors import ConfigError

from ..conftest import REPO

CPUINFO = REPO / "tests" / "fixtures" / "cpuinfo" / "amd_epyc_avx2.txt"


def machine(cpu_ids: tuple[int, ...], gpus: int = 0) -> Hardware:
    """The project's AVX2 machine with `cpu_ids` as its cores (a cpuset not starting at 0)."""
    hw = probe_hardware(CPUINFO.read_text(), "x86_64", cores=len(cpu_ids), gpus=gpus)
    return dataclasses.replace(hw, cpu_ids=cpu_ids)


def config(*overrides: str):
    return compose_run_config(REPO / "conf", ["+games=[kuhn]", *overrides])


def test_max_staleness_must_not_be_negative():
    with pytest.raises(ConfigError, match=r"train\.max_staleness=-1 is out of range"):
        TrainConfig(max_staleness=-1)


def test_overlap_with_sparse_pushes_is_refused_naming_both_fixes():
    with pytest.raises(ConfigError) as err:
        config("train.max_staleness=1", "train.push_every=2")
    assert "train.push_every=1" in str(err.value) and "train.max_staleness=0" in str(err.value)
    assert TrainConfig(max_staleness=0, push_every=2).push_every == 2  # synchronous: allowed


@pytest.mark.parametrize(
    ("max_staleness", "push_every", "bound"), [(0, 1, 0), (1, 1, 1), (3, 1, 3), (0, 4, 3)]
)
def test_staleness_bound_counts_versions_ahead_and_between_pushes(max_staleness, push_every, bound):
    cfg = TrainConfig(max_staleness=max_staleness, push_every=push_every)
    assert cfg.staleness_bound() == bound


def test_batching_accepts_its_three_modes_and_names_them_otherwise():
    assert {RolloutConfig(batching=b).batching for b in ("auto", "stream", "round")} == {
        "auto",
        "stream",
        "round",
    }
    with pytest.raises(ConfigError, match=r"rollout\.batching='rounds'.*auto, stream, round"):
        config("rollout.batching=rounds")


def test_synchronous_run_on_two_cores_gives_each_phase_both_and_pins_nothing():
    plan = plan_runtime(config(), machine((4, 5)), vllm_installed=True)
    assert (plan.rollout_threads, plan.learner_threads) == (2, 2)
    assert not plan.overlap and plan.learner_cpus == ()
    assert "alternate" in plan.lines()[-1] and "learner on CPUs" not in plan.lines()[-1]


@pytest.mark.parametrize("installed", [True, False])  # vLLM or transformers rollout
def test_overlap_on_two_cores_splits_them_and_pins_the_learner_to_the_second(installed):
    plan = plan_runtime(config("train.max_staleness=1"), machine((4, 5)), installed)
    assert (plan.rollout_threads, plan.learner_threads) == (1, 1)
    assert plan.overlap and plan.learner_cpus == (5,)
    assert cpu_slice((4, 5), plan.rollout_threads, 0) == [4]  # the worker's core, apart
    threads = plan.lines()[-1]
    assert "overlap" in threads and "learner on CPUs [5]" in threads
    assert plan.as_dict()["learner_cpus"] == (5,)


@pytest.mark.parametrize(
    "overrides",
    [
        ("learner.num_ranks=2",),  # several ranks: no single in-process learner to bind
        ("ray.address=auto",),  # a cluster: the driver does not know the workers' cores
    ],
)
def test_overlap_pins_only_a_single_local_learner(overrides):
    plan = plan_runtime(config("train.max_staleness=1", *overrides), machine((0, 1, 2, 3)), True)
    assert plan.overlap and plan.learner_cpus == ()


def test_overlap_on_a_gpu_machine_pins_nothing():
    plan = plan_runtime(config("train.max_staleness=1"), machine((0, 1), gpus=1), True)
    assert plan.overlap and plan.learner_cpus == ()
    assert "learner on CPUs" not in plan.lines()[-1]


def test_explicit_threads_that_do_not_fit_side_by_side_are_left_to_the_os():
    cfg = config("train.max_staleness=1", "rollout.cpu_threads=2")
    plan = plan_runtime(cfg, machine((4, 5)), True)
    assert (plan.rollout_threads, plan.learner_threads) == (2, 1)  # explicit wins
    assert plan.learner_cpus == ()


@pytest.mark.parametrize(
    ("cores", "workers", "ranks"), [(2, 1, 1), (4, 1, 1), (8, 3, 1), (16, 2, 1), (8, 2, 2)]
)
def test_pinned_learner_never_shares_a_core_with_a_rollout_worker(cores, workers, ranks):
    cpu_ids = tuple(range(10, 10 + cores))
    cfg = config(
        "train.max_staleness=1", f"rollout.num_workers={workers}", f"learner.num_ranks={ranks}"
    )
    plan = plan_runtime(cfg, machine(cpu_ids), True)
    assert workers * plan.rollout_threads + ranks * plan.learner_threads <= cores
    if ranks == 1:
        assert len(plan.learner_cpus) == plan.learner_threads
        assert set(plan.learner_cpus) <= set(cpu_ids)
        for k in range(workers):
            assert not set(cpu_slice(cpu_ids, plan.rollout_threads, k)) & set(plan.learner_cpus)
    else:
        assert plan.learner_cpus == ()


def test_overlap_with_sleeping_engines_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"train\.max_staleness=0 or rollout\.sleep_when"):
        compose_run_config(
            REPO / "conf",
            ["+games=[kuhn]", "train.max_staleness=1", "rollout.sleep_when_training=true"],
        )


def test_streamed_games_on_transformers_is_refused_at_planning():
    from spiral_games.errors import EngineError

    with pytest.raises(EngineError, match=r"rollout\.batching=auto"):
        plan_runtime(config("rollout.engine=hf", "rollout.batching=stream"))


@pytest.mark.parametrize(
    ("overrides", "cap"),
    [
        ((), 0.0),  # synchronous: the ratio to the behaviour log-probs, as before
        (("train.max_staleness=1",), ASYNC_TIS_CAP),  # played ahead: decoupled, capped weights
        (("train.max_staleness=3",), ASYNC_TIS_CAP),
        (("train.max_staleness=1", "learner.tis_cap=0"), 0.0),  # explicit off stays off
        (("train.max_staleness=1", "learner.tis_cap=3.5"), 3.5),
        (("learner.tis_cap=2.0",), 2.0),  # synchronous with TIS, for the engine mismatch
    ],
)
def test_tis_cap_defaults_on_only_when_samples_are_played_ahead(overrides, cap):
    cfg = config(*overrides)
    assert cfg.learner.tis_cap == cap and cfg.importance_cap() == cap


def test_importance_cap_refuses_an_unresolved_value():
    cfg = config()
    cfg.learner.tis_cap = None
    with pytest.raises(ConfigError, match=r"learner\.tis_cap is unset"):
        cfg.importance_cap()
