"""Starting or joining Ray: loopback-only for a local instance, any address for a cluster."""

from __future__ import annotations

import os
import signal
import sys
import threading

from spiral_games.config.schema import RayConfig


def init_ray(cfg: RayConfig) -> None:
    """Start a local Ray bound to 127.0.0.1, or connect to `cfg.address`; no-op if running.

    Workers import `spiral_games` and `games` from the installed project (`launch/install.sh`
    installs it, editable, on every node). The process's SIGTERM handler is kept: `ray.init`
    replaces it with one that exits without unwinding, which would skip the trainer's save of
    its completed steps and Ray's own shutdown.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    in_main_thread = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if in_main_thread else None
    if cfg.address:
        ray.init(address=cfg.address, log_to_driver=True)
    else:
        ray.init(
            address="local",  # always a fresh instance: never join a stray local cluster
            num_cpus=cfg.num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",  # nothing listens beyond loopback unless asked
        )
    if in_main_thread and on_sigterm is not None:
        signal.signal(signal.SIGTERM, on_sigterm)


def stop_ray() -> None:
    """Stop this process's Ray: a local instance with every process it started (raylet, GCS,
    dashboard and runtime-env agents, workers), or the connection to a cluster. No-op if Ray
    was never started."""
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()


def cluster_resources() -> dict[str, float]:
    """What the running Ray cluster has in all (CPU, GPU, memory, ...)."""
    import ray

    return dict(ray.cluster_resources())
