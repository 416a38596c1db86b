"""RolloutPool: N RolloutWorker Ray actors in a placement group (a thin adapter over Ray)."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from spiral_games.errors import ConfigError, SpiralError
from spiral_games.rollout_worker import RolloutWorker, WorkerConfig
from spiral_games.types import Episode

READY_TIMEOUT_S = 600.0
log = logging.getLogger(__name__)


class RolloutError(SpiralError):
    """Rollout workers kept dying past `rollout.max_worker_failures`."""


class RolloutPool:
    """Spreads episode collection and weight pushes over `num_workers` actors."""

    def __init__(
        self,
        cfg: WorkerConfig,
        num_workers: int,
        worker_cpus: float = 1.0,
        worker_gpus: float = 0.0,
        strategy: str = "PACK",
        max_failures: int = 3,
    ) -> None:
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if num_workers < 1:
            raise ConfigError(f"rollout.num_workers={num_workers}: at least one worker is needed.")
        bundle = {"CPU": worker_cpus, **({"GPU": worker_gpus} if worker_gpus else {})}
        self.group = placement_group([dict(bundle) for _ in range(num_workers)], strategy=strategy)
        ready, _ = ray.wait([self.group.ready()], timeout=60)
        if not ready:
            ray.util.remove_placement_group(self.group)
            raise ConfigError(
                f"Ray cannot place {num_workers} rollout workers of {bundle} with strategy "
                f"{strategy} (cluster has {ray.cluster_resources()}). Lower rollout.num_workers, "
                "rollout.worker_cpus/worker_gpus, or add nodes."
            )
        self.max_failures = max_failures
        self.failures = 0
        self.weights: tuple[str, int] | None = None  # last push, re-sent to restarted workers
        self._shipped: tuple[tuple[str, int], Any] | None = None  # object-store copy of a push
        actor = ray.remote(RolloutWorker)
        self.workers = [
            actor.options(
                max_restarts=max_failures,
                num_cpus=worker_cpus,
                num_gpus=worker_gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self.group, placement_group_bundle_index=i
                ),
            ).remote(cfg, i)
            for i in range(num_workers)
        ]
        ray.get([w.version.remote() for w in self.workers], timeout=READY_TIMEOUT_S)
        here = ray.get_runtime_context().get_node_id()
        self.remote = [loc["node_id"] != here for loc in self.locations()]

    def collect(self, num_episodes: int, seed: int) -> list[Episode]:
        """`num_episodes` finished episodes, split evenly over the workers.

        A worker that dies mid-collection loses only its unfinished share: Ray restarts it, it
        gets the current weights again, and it plays its share anew with the same seed, so no
        episode is counted twice and no half-finished episode is returned.
        """
        n = len(self.workers)
        counts = [num_episodes // n + (i < num_episodes % n) for i in range(n)]
        rng = random.Random(seed)
        seeds = [rng.randrange(2**31) for _ in range(n)]
        shares = [(i, c, s) for i, (c, s) in enumerate(zip(counts, seeds, strict=True)) if c]
        return self._gather(lambda i, c, s: self.workers[i].collect.remote(c, s), shares)

    def _gather(self, call: Any, shares: list[tuple[int, int, int]]) -> list[Episode]:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        results: dict[int, list[Episode]] = {}
        pending = {call(*share): share for share in shares}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            share = pending.pop(ready[0])
            try:
                results[share[0]] = ray.get(ready[0])
            except (RayActorError, ActorUnavailableError) as exc:
                self._recover(share[0], exc)
                pending[call(*share)] = share
        return [episode for i in sorted(results) for episode in results[i]]

    def _recover(self, index: int, exc: Exception) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError

        self.failures += 1
        if self.failures > self.max_failures:
            raise RolloutError(
                f"Rollout workers died {self.failures} times (limit "
                f"rollout.max_worker_failures={self.max_failures}); last error: "
                f"{type(exc).__name__}. Resume from the last checkpoint with train.resume=true."
            ) from exc
        log.warning(
            "Rollout worker %d died (%s); Ray restarts it (failure %d of at most %d). Its "
            "unfinished episodes are dropped and its share is played again.",
            index,
            type(exc).__name__,
            self.failures,
            self.max_failures,
        )
        worker = self.workers[index]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:  # the restarted actor answers once its __init__ has run again
            try:
                ray.get(worker.version.remote(), timeout=READY_TIMEOUT_S)
                break
            except ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        if self.weights is not None:
            ray.get(self._load(index, *self.weights))
            log.warning(
                "Restarted worker %d now serves weights version %d.", index, self.weights[1]
            )

    def evaluate(self, games_per_pair: int, seed: int) -> list[Episode]:
        """Evaluation games against fixed opponents, split over the workers."""
        n = len(self.workers)
        counts = [games_per_pair // n + (i < games_per_pair % n) for i in range(n)]
        shares = [(i, c, seed + i) for i, c in enumerate(counts) if c]
        return self._gather(lambda i, c, s: self.workers[i].evaluate.remote(c, s), shares)

    def push_weights(self, safetensors_path: str, version: int) -> list[int]:
        """Load new weights into every worker; returns each worker's version afterwards."""
        import ray

        self.weights = (safetensors_path, version)
        return ray.get([self._load(i, safetensors_path, version) for i in range(len(self.workers))])

    def _load(self, index: int, path: str, version: int) -> Any:
        """Same-node workers read the file; others get its bytes through the object store."""
        import ray

        worker = self.workers[index]
        if not self.remote[index]:
            return worker.load_weights.remote(path, version)
        if self._shipped is None or self._shipped[0] != (path, version):
            with open(path, "rb") as fh:
                self._shipped = ((path, version), ray.put(fh.read()))
        return worker.load_weights_bytes.remote(self._shipped[1], version)

    def score(
        self, prompts: list[list[int]], responses: list[list[int]]
    ) -> list[list[list[float]]]:
        """Each worker's log-probs of the same fixed sequences."""
        import ray

        return ray.get([w.score.remote(prompts, responses) for w in self.workers])

    def locations(self) -> list[dict[str, Any]]:
        """Node and process of each worker."""
        import ray

        return ray.get([w.location.remote() for w in self.workers])

    def shutdown(self) -> None:
        """Stop the engines, the actors and the placement group."""
        import ray

        try:
            ray.get([w.close.remote() for w in self.workers], timeout=60)
        finally:
            for w in self.workers:
                ray.kill(w)
            ray.util.remove_placement_group(self.group)
