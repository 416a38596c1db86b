"""RolloutPool: N RolloutWorker Ray actors in a placement group (a thin adapter over Ray)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from spiral_games.actors.rollout_worker import RolloutWorker, WorkerConfig
from spiral_games.config.choices import NodeLoss
from spiral_games.config.schema import RolloutConfig
from spiral_games.errors import ConfigError, RolloutError
from spiral_games.faults import kill_point
from spiral_games.play.league import LeagueDraw
from spiral_games.play.rollout import EvalShare, split_evenly
from spiral_games.types import Episode, Generation

READY_TIMEOUT_S = 600.0
log = logging.getLogger(__name__)


class RolloutPool:
    """Spreads episode collection and weight pushes over `num_workers` actors."""

    def __init__(self, cfg: WorkerConfig, rollout: RolloutConfig) -> None:
        """Start `rollout.num_workers` workers serving `cfg`, each in its own placement-group
        bundle of `rollout.worker_cpus`/`worker_gpus`, restarted by Ray up to
        `rollout.max_worker_failures` times; `rollout.on_node_loss` says what a lost node does."""
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        num_workers, worker_cpus, worker_gpus = (
            rollout.num_workers,
            rollout.worker_cpus,
            rollout.worker_gpus,
        )
        strategy, max_failures = rollout.placement_strategy, rollout.max_worker_failures
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
        self.on_node_loss = rollout.on_node_loss  # stop: raise RolloutError; continue: drop it
        self.failures = 0
        self.closing = False  # the run is stopping: a dying worker is not waited for
        self.weights: tuple[str, int] | None = None  # last file push, re-sent on a restart
        self.league: dict[str, tuple[str, int]] = {}  # league snapshots, re-sent on a restart
        self._league_held: dict[int, set[str]] = {}  # remote workers: snapshots they hold
        self._league_refs: dict[str, Any] = {}  # object-store copies of snapshot files
        # streamed pushes (WeightSync): brings a restarted worker to the latest version
        self.catch_up: Callable[[int], None] | None = None
        self._shipped: tuple[tuple[str, int], Any] | None = None  # object-store copy of a push
        actor = ray.remote(RolloutWorker)
        # Any: Ray types a handle as `ActorHandle[T] | type[T]`, so its methods lack `.remote`
        self.workers: list[Any] = [
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
        self.alive = [True] * num_workers  # False once a worker's node has left the cluster
        ray.get([w.version.remote() for w in self.workers], timeout=READY_TIMEOUT_S)
        here = ray.get_runtime_context().get_node_id()
        self.nodes = [loc["node_id"] for loc in self.locations()]
        self.remote = [node != here for node in self.nodes]

    def live(self) -> list[int]:
        """Indices of the workers still in service."""
        return [i for i, ok in enumerate(self.alive) if ok]

    def collect(
        self, num_episodes: int, seed: int, draw: LeagueDraw | None = None
    ) -> list[Episode]:
        """`num_episodes` finished episodes, split evenly over the workers (each game's
        opponent drawn from the league `draw` when one is given).

        A worker that dies mid-collection loses only its unfinished share: Ray restarts it, it
        gets the current weights again, and it plays its share anew with the same seed, so no
        episode is counted twice and no half-finished episode is returned.
        """
        live = self.live()
        n = len(live)
        counts = split_evenly(num_episodes, n)
        rng = random.Random(seed)
        seeds = [rng.randrange(2**31) for _ in range(n)]
        shares = [(i, c, s) for i, c, s in zip(live, counts, seeds, strict=True) if c]
        return self._gather(lambda i, c, s: self.workers[i].collect.remote(c, s, draw), shares)

    def set_league(self, snapshots: dict[str, tuple[str, int]]) -> None:
        """The league's snapshots (name -> (weights file, step taken after)), sent to every
        worker now and to a restarted one before it plays again. Workers on other nodes get
        each file once, through the object store, and keep their copy while it is a member."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        self.league = dict(snapshots)
        self._league_refs = {n: r for n, r in self._league_refs.items() if n in self.league}
        try:
            ray.get([self._send_league(i) for i in self.live()])
        except (RayActorError, ActorUnavailableError) as exc:
            raise RolloutError(
                f"Sending the league's snapshots to the rollout workers failed "
                f"({type(exc).__name__}). Completed steps are checkpointed; resume with "
                "train.resume=true."
            ) from exc

    def _send_league(self, index: int, fresh: bool = False) -> Any:
        """Same-node workers read the files; others get what they do not hold yet (all of it
        when `fresh`: a restarted worker holds nothing)."""
        import ray

        worker = self.workers[index]
        if not self.remote[index]:
            return worker.set_league.remote(self.league)
        held = set() if fresh else self._league_held.get(index, set())
        payload: dict[str, tuple[Any, int]] = {}
        for name, (path, step) in self.league.items():
            if name not in held and name not in self._league_refs:
                with open(path, "rb") as fh:
                    self._league_refs[name] = ray.put(fh.read())
            payload[name] = (None if name in held else self._league_refs[name], step)
        self._league_held[index] = set(self.league)
        return worker.set_league.remote(payload)

    def _gather(self, call: Any, shares: list[tuple[Any, ...]]) -> list[Episode]:
        """Run every share; a share whose worker dies is played again (same seed) by the
        restarted worker or, once its node is gone, by a surviving worker."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        results: dict[int, list[Episode]] = {}
        pending = {call(*share): (k, share) for k, share in enumerate(shares)}
        kill_point("rollout")
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            k, share = pending.pop(ready[0])
            try:
                results[k] = ray.get(ready[0])
            except (RayActorError, ActorUnavailableError) as exc:
                index = self._recover(share[0], exc)
                share = (index, *share[1:])
                pending[call(*share)] = (k, share)
        return [episode for k in sorted(results) for episode in results[k]]

    def _node_alive(self, index: int) -> bool:
        import ray

        return any(n["NodeID"] == self.nodes[index] and n["Alive"] for n in ray.nodes())

    def _lose_node(self, index: int) -> int:
        """Worker `index`'s node left the cluster: stop, or go on without it. Returns the index
        of the worker that takes over its share."""
        import ray

        node = self.nodes[index][:12]
        self.alive[index] = False
        ray.kill(self.workers[index], no_restart=True)
        if self.on_node_loss == NodeLoss.stop:
            raise RolloutError(
                f"Node {node}... running rollout worker {index} left the cluster "
                "(rollout.on_node_loss=stop). Completed steps are checkpointed; resume with "
                "train.resume=true once the cluster is whole, or set "
                "rollout.on_node_loss=continue to go on with the remaining workers."
            )
        live = self.live()
        if not live:
            raise RolloutError(
                "Every rollout worker's node has left the cluster. Add nodes and resume with "
                "train.resume=true."
            )
        log.warning(
            "Node %s... of rollout worker %d left the cluster; continuing with %d worker(s) "
            "(rollout.on_node_loss=continue). Its unfinished share is played by worker %d.",
            node,
            index,
            len(live),
            live[0],
        )
        return live[0]

    def _recover(self, index: int, exc: Exception) -> int:
        """Bring a dead worker back (or hand its share on, if its node is gone); returns the
        index of the worker that plays the share again."""
        import ray
        from ray.exceptions import ActorUnavailableError

        if self.closing:
            raise RolloutError(f"Rollout worker {index} stopped: the run is shutting down.")
        if not self._node_alive(index):
            return self._lose_node(index)

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
                ray.get(worker.version.remote(), timeout=10)
                break
            except (ActorUnavailableError, ray.exceptions.GetTimeoutError):
                if not self._node_alive(index):  # the node went down after all
                    self.failures -= 1
                    return self._lose_node(index)
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        if self.catch_up is not None:
            self.catch_up(index)
        elif self.weights is not None:
            ray.get(self._load(index, *self.weights))
            log.warning(
                "Restarted worker %d now serves weights version %d.", index, self.weights[1]
            )
        if self.league:
            ray.get(self._send_league(index, fresh=True))
        return index

    def evaluate(self, shares: Sequence[EvalShare]) -> list[Episode]:
        """Evaluation games against fixed opponents: each share (`evaluation_shares` over
        `len(live())` workers) played by the share's live worker, from its seed and first seat."""
        live = self.live()
        calls = [(live[sh.position], sh.games, sh.seed, sh.first_seat) for sh in shares]
        return self._gather(lambda i, c, s, f: self.workers[i].evaluate.remote(c, s, f), calls)

    def analyse(self, seed: int) -> dict[str, float]:
        """The games' exact analyses of the evaluated policy, on the first live worker."""
        import ray

        return ray.get(self.workers[self.live()[0]].analyse.remote(seed))

    def push_weights(self, safetensors_path: str, version: int) -> list[int]:
        """Load new weights into every worker; returns each worker's version afterwards."""
        import ray

        self.weights = (safetensors_path, version)
        loading = [self._load(i, safetensors_path, version) for i in self.live()]
        kill_point("push")
        return ray.get(loading)

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

    def versions(self) -> list[int]:
        """The weights version each live worker serves."""
        import ray

        return ray.get([self.workers[i].version.remote() for i in self.live()])

    def incarnations(self, indices: list[int]) -> list[str]:
        """Which start of each of the workers `indices` answers (new after a Ray restart)."""
        import ray

        return ray.get([self.workers[i].incarnation.remote() for i in indices])

    def leave_weight_transfer(self, indices: list[int]) -> None:
        """The workers `indices` leave their streamed-push transfer group."""
        import ray

        ray.get([self.workers[i].shutdown_weight_transfer.remote() for i in indices])

    def transfer_timing(self, index: int) -> dict[str, float]:
        """Where worker `index`'s last streamed push went (receive, load, finalize seconds)."""
        import ray

        return ray.get(self.workers[index].transfer_timing.remote())

    def sleep(self) -> None:
        """Free every live worker's accelerator memory for a collocated learner; the next
        `push_weights` wakes them."""
        import ray

        ray.get([self.workers[i].sleep.remote() for i in self.live()])

    def score(
        self, prompts: list[list[int]], responses: list[list[int]]
    ) -> list[list[list[float]]]:
        """Each worker's log-probs of the same fixed sequences."""
        import ray

        return ray.get([self.workers[i].score.remote(prompts, responses) for i in self.live()])

    def greedy(self, prompt: list[int], max_tokens: int) -> list[Generation]:
        """Each live worker's greedy reply to the same prompt (the start-up agreement check:
        workers on other nodes may run other CPUs)."""
        import ray

        return ray.get([self.workers[i].greedy.remote(prompt, max_tokens) for i in self.live()])

    def engine_infos(self) -> list[dict[str, str]]:
        """The engine each worker runs, with the reason for any automatic fallback."""
        import ray

        return ray.get([self.workers[i].engine_info.remote() for i in self.live()])

    def locations(self) -> list[dict[str, Any]]:
        """Node and process of each worker."""
        import ray

        return ray.get([self.workers[i].location.remote() for i in self.live()])

    def shutdown(self, graceful: bool = True) -> None:
        """Stop the engines, the actors and the placement group. Workers that are dead or
        restarting are skipped: shutting down must not hide the error that led to it.
        `graceful=False` (a collection is still running in them): kill the workers without
        waiting for it; their engines' processes follow their owner."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        self.closing = True
        closing = [self.workers[i].close.remote() for i in self.live()] if graceful else []
        for ref in closing:
            try:
                ray.get(ref, timeout=60)
            except (RayActorError, GetTimeoutError) as exc:  # ActorUnavailableError included
                log.warning("A rollout worker could not close cleanly (%s).", type(exc).__name__)
        for w in self.workers:
            ray.kill(w)
        ray.util.remove_placement_group(self.group)
