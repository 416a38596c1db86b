"""Starting or joining Ray: loopback-only for a local instance, any address for a cluster."""

from __future__ import annotations

import os
import sys

from spiral_games.config.schema import RayConfig


def init_ray(cfg: RayConfig) -> None:
    """Start a local Ray bound to 127.0.0.1, or connect to `cfg.address`; no-op if running."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray workers must import `spiral_games` and `games` even when run from a checkout.
    runtime_env = {"env_vars": {"PYTHONPATH": _project_pythonpath()}}
    if cfg.address:
        ray.init(address=cfg.address, runtime_env=runtime_env, log_to_driver=True)
    else:
        ray.init(
            address="local",  # always a fresh instance: never join a stray local cluster
            num_cpus=cfg.num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",  # nothing listens beyond loopback unless asked
            runtime_env=runtime_env,
        )


def stop_ray() -> None:
    """Stop this process's Ray: a local instance with every process it started (raylet, GCS,
    dashboard and runtime-env agents, workers), or the connection to a cluster. No-op if Ray
    was never started."""
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _project_pythonpath() -> str:
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    existing = os.environ.get("PYTHONPATH", "")
    return root if not existing else f"{root}{os.pathsep}{existing}"
