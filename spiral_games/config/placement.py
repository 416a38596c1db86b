"""What a run asks Ray for, and whether a cluster holds it (pure: no Ray import).

The caller passes `ray.cluster_resources()` to `check_fits`; `plan_resources` needs only the
config.

The requests mirror `RolloutPool` (one bundle of `rollout.worker_cpus`/`worker_gpus` per worker,
no GPU key when it asks for none) and `LearnerGroup` (one actor of `learner.cpus_per_rank`/
`gpus_per_rank` per rank when `learner.num_ranks > 1`; a single rank runs inside the driver
process and asks Ray for nothing). docs/gpu.md explains the 8-GPU plan built from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from spiral_games.config.schema import RunConfig
from spiral_games.errors import ConfigError

_SLACK = 1e-9  # float sums of fractional requests (0.1 + 0.2 ...)


@dataclass(frozen=True)
class ResourceRequest:
    """One thing Ray must place: a rollout worker's bundle or a learner rank's actor."""

    owner: str  # "rollout/<i>" or "learner/<rank>"
    cpus: float
    gpus: float

    def bundle(self) -> dict[str, float]:
        """The request as Ray takes it; no GPU key when it asks for none (as RolloutPool)."""
        return {"CPU": self.cpus, **({"GPU": self.gpus} if self.gpus else {})}


@dataclass(frozen=True)
class ResourcePlan:
    """Everything a run asks Ray for, and what it leaves outside Ray's accounting."""

    rollout: tuple[ResourceRequest, ...]  # the placement group's bundles, one per worker
    learner: tuple[ResourceRequest, ...]  # one actor per rank; () when it runs in the driver
    strategy: str  # the rollout placement group's strategy
    warnings: tuple[str, ...] = ()

    @property
    def learner_in_driver(self) -> bool:
        """A single learner rank runs in the driver process, not as a Ray actor."""
        return not self.learner

    @property
    def gpus(self) -> float:
        return sum(r.gpus for r in (*self.rollout, *self.learner))

    @property
    def cpus(self) -> float:
        return sum(r.cpus for r in (*self.rollout, *self.learner))

    def bundles(self) -> list[dict[str, float]]:
        """The rollout placement group's bundles, exactly as RolloutPool asks for them."""
        return [r.bundle() for r in self.rollout]

    def gpu_owners(self) -> list[str] | None:
        """One owner per GPU, when every request takes whole GPUs (so no two share one);
        None when some request is fractional (Ray may then pack owners onto one GPU)."""
        requests = (*self.rollout, *self.learner)
        if any(r.gpus != int(r.gpus) for r in requests):
            return None
        return [r.owner for r in requests for _ in range(int(r.gpus))]

    def lines(self) -> list[str]:
        """Human-readable lines, for the start of a run and for errors."""
        learner = (
            f"{len(self.learner)} x {self.learner[0].bundle()}"
            if self.learner
            else "in the driver process (not a Ray actor)"
        )
        rollout = f"{len(self.rollout)} x {self.rollout[0].bundle()}" if self.rollout else "none"
        return [
            f"ray resources: rollout placement group {rollout} ({self.strategy}); "
            f"learner ranks {learner}; total {_num(self.gpus)} GPU, {_num(self.cpus)} CPU",
            *(f"warning: {w}" for w in self.warnings),
        ]


def plan_resources(cfg: RunConfig) -> ResourcePlan:
    """The Ray resources `cfg` asks for: rollout bundles, learner rank actors, and warnings
    about GPU use that Ray does not see."""
    r, lc = cfg.rollout, cfg.learner
    rollout = tuple(
        ResourceRequest(f"rollout/{i}", r.worker_cpus, r.worker_gpus) for i in range(r.num_workers)
    )
    learner: tuple[ResourceRequest, ...] = ()
    if lc.num_ranks > 1:  # LearnerGroup; one rank is an in-process Learner in the driver
        learner = tuple(
            ResourceRequest(f"learner/{k}", lc.cpus_per_rank, lc.gpus_per_rank)
            for k in range(lc.num_ranks)
        )
    return ResourcePlan(rollout, learner, r.placement_strategy, _warnings(cfg, learner))


def _warnings(cfg: RunConfig, learner: tuple[ResourceRequest, ...]) -> tuple[str, ...]:
    r, lc = cfg.rollout, cfg.learner
    out = []
    if not learner and (r.worker_gpus or lc.gpus_per_rank) and not r.sleep_when_training:
        out.append(
            "learner.num_ranks=1 runs the learner in the driver process, outside Ray's GPU "
            "accounting (learner.gpus_per_rank is not used): on a GPU machine it takes the "
            "driver's first visible GPU, which Ray may also give a rollout worker. For dedicated "
            "learner GPUs set learner.num_ranks>=2 and learner.gpus_per_rank=1."
        )
    if learner and r.worker_gpus and not lc.gpus_per_rank:
        out.append(
            "the rollout workers use GPUs but the learner ranks ask Ray for none "
            "(learner.gpus_per_rank=0): Ray hides the GPUs from them and they train on the CPU. "
            "Set learner.gpus_per_rank=1."
        )
    return tuple(out)


def check_fits(cfg: RunConfig, cluster_resources: Mapping[str, float]) -> ResourcePlan:
    """Check that a cluster (`ray.cluster_resources()`) holds everything `cfg` asks for; call
    it once Ray is up, before any actor is started. Returns the plan.

    Only totals are compared: a request larger than any one node still fails later, when Ray
    cannot place it.

    Raises:
        ConfigError: the cluster has fewer GPUs or CPUs than the plan needs, naming the
            settings to lower.
    """
    plan = plan_resources(cfg)
    have_gpus = float(cluster_resources.get("GPU", 0.0))
    have_cpus = float(cluster_resources.get("CPU", 0.0))
    r, lc = cfg.rollout, cfg.learner
    ranks = f"{len(plan.learner)} learner ranks x " if plan.learner else ""
    if plan.gpus > have_gpus + _SLACK:
        learner_gpus = f" + {ranks}{_num(lc.gpus_per_rank)} GPU" if plan.learner else ""
        raise ConfigError(
            f"The run asks Ray for {_num(plan.gpus)} GPUs ({r.num_workers} rollout workers x "
            f"{_num(r.worker_gpus)} GPU{learner_gpus}), but the cluster has {_num(have_gpus)}. "
            "Lower rollout.num_workers or learner.num_ranks (or rollout.worker_gpus, "
            "learner.gpus_per_rank), or join a larger cluster with ray.address=<head>."
        )
    if plan.cpus > have_cpus + _SLACK:
        learner_cpus = f" + {ranks}{_num(lc.cpus_per_rank)} CPU" if plan.learner else ""
        raise ConfigError(
            f"The run asks Ray for {_num(plan.cpus)} CPUs ({r.num_workers} rollout workers x "
            f"{_num(r.worker_cpus)} CPU{learner_cpus}), but the cluster has {_num(have_cpus)}. "
            "Lower rollout.worker_cpus or learner.cpus_per_rank (or the worker and rank "
            "counts), raise ray.num_cpus if you capped it, or add nodes."
        )
    return plan


def _num(value: float) -> str:
    """1.0 -> "1", 0.5 -> "0.5": counts read as counts in messages."""
    return str(int(value)) if math.isclose(value, round(value)) else f"{value:g}"
