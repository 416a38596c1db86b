"""RolloutPool: N RolloutWorker Ray actors in a placement group (a thin adapter over Ray)."""

from __future__ import annotations

import random
from typing import Any

from spiral_games.errors import ConfigError
from spiral_games.rollout_worker import RolloutWorker, WorkerConfig
from spiral_games.types import Episode

READY_TIMEOUT_S = 600.0


class RolloutPool:
    """Spreads episode collection and weight pushes over `num_workers` actors."""

    def __init__(
        self,
        cfg: WorkerConfig,
        num_workers: int,
        worker_cpus: float = 1.0,
        worker_gpus: float = 0.0,
        strategy: str = "PACK",
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
        actor = ray.remote(RolloutWorker)
        self.workers = [
            actor.options(
                num_cpus=worker_cpus,
                num_gpus=worker_gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self.group, placement_group_bundle_index=i
                ),
            ).remote(cfg, i)
            for i in range(num_workers)
        ]
        ray.get([w.version.remote() for w in self.workers], timeout=READY_TIMEOUT_S)

    def collect(self, num_episodes: int, seed: int) -> list[Episode]:
        """`num_episodes` finished episodes, split evenly over the workers."""
        import ray

        n = len(self.workers)
        counts = [num_episodes // n + (i < num_episodes % n) for i in range(n)]
        rng = random.Random(seed)
        seeds = [rng.randrange(2**31) for _ in range(n)]
        futures = [
            w.collect.remote(c, s) for w, c, s in zip(self.workers, counts, seeds, strict=True) if c
        ]
        return [episode for batch in ray.get(futures) for episode in batch]

    def evaluate(self, games_per_pair: int, seed: int) -> list[Episode]:
        """Evaluation games against fixed opponents, split over the workers."""
        import ray

        n = len(self.workers)
        counts = [games_per_pair // n + (i < games_per_pair % n) for i in range(n)]
        futures = [
            w.evaluate.remote(c, seed + i)
            for i, (w, c) in enumerate(zip(self.workers, counts, strict=True))
            if c
        ]
        return [episode for batch in ray.get(futures) for episode in batch]

    def push_weights(self, safetensors_path: str, version: int) -> list[int]:
        """Load new weights into every worker; returns each worker's version afterwards."""
        import ray

        return ray.get([w.load_weights.remote(safetensors_path, version) for w in self.workers])

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
