"""How many pytest-xdist workers the suite runs (`-n auto`), from the cores and memory here."""

from __future__ import annotations

# The most memory one test worker's processes held at once, measured with two workers on the
# AVX2 machine (docs/performance.md, "Tests"): a trainer run with Ray, vLLM and DeepSpeed.
WORKER_MEMORY_GIB = 6.0


def worker_count(cpus: int, available_gib: float, per_worker_gib: float = WORKER_MEMORY_GIB) -> int:
    """One worker per core (a test mostly keeps one core busy while it imports, starts engines
    or waits on a subprocess), fewer if memory would not hold them; at least one."""
    return max(1, min(cpus, int(available_gib // per_worker_gib)))


def available_memory_gib(meminfo: str) -> float:
    """MemAvailable from a /proc/meminfo text, in GiB."""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    raise ValueError("no MemAvailable line in /proc/meminfo")
