"""WeightSync: the trainer's one way to push new weights to every rollout worker.

Backends (`rollout.weight_sync`, resolved by `config.hardware.choose_weight_sync`):

- `file`: the learner writes one safetensors file to /dev/shm and every worker reloads it
  (other nodes get its bytes through Ray's object store). The transformers engine's path.
- `spiral_gloo` (CPU), `nccl` (separate learner and rollout GPUs, other nodes) and `ipc` (the
  same GPU): vLLM's weight-transfer API. Learner rank 0 streams the weights tensor by tensor
  (ZeRO-3 gathers each one on every rank) into each engine's start/update/finish protocol;
  the trainer side is vLLM's `TrainerWeightTransferEngine` for every backend.

Every push carries its version. A worker that Ray restarts, or a worker set that shrinks when a
node leaves, re-forms the transfer group, and the live workers catch up with the learner's
weights at once, under the latest pushed version.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from spiral_games.actors.learner_group import LearnerGroup
from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.actors.trainer_side import TrainerSide, WorkerClient
from spiral_games.config.hardware import ram_tmp_dir
from spiral_games.faults import kill_point
from spiral_games.learn.learner import Learner, free_port

log = logging.getLogger(__name__)


class WeightSync:
    """Pushes the learner's weights to the pool's live workers, with the plan's backend (`file`
    where any worker runs transformers, e.g. after `rollout.engine=auto` fell back)."""

    def __init__(
        self,
        learner: Learner | LearnerGroup,
        pool: RolloutPool,
        backend: str,
        ranks_per_worker: int,
    ) -> None:
        """`backend` as the plan resolved it; `ranks_per_worker`: each engine's processes
        (rollout.tensor_parallel_size)."""
        engines = {info["engine"] for info in pool.engine_infos()}
        if backend != "file" and engines != {"vllm"}:
            log.warning(
                "rollout.weight_sync=%s needs vLLM in every worker, and some run %s: pushing "
                "through a file instead.",
                backend,
                ", ".join(sorted(engines - {"vllm"})),
            )
            backend = "file"
        self.learner, self.pool, self.backend = learner, pool, backend
        self.push_dir = Path(tempfile.mkdtemp(prefix="spiral-weights-", dir=ram_tmp_dir()))
        self.ranks_per_worker = ranks_per_worker
        self.version: int | None = None  # the latest version pushed
        self.members: list[int] | None = None  # the live workers the transfer group holds
        self.local = TrainerSide(learner, 0) if isinstance(learner, Learner) else None
        if backend != "file":
            pool.catch_up = self._catch_up

    @property
    def streaming(self) -> bool:
        return self.backend != "file"

    def push(self, version: int) -> list[int]:
        """Serve the learner's current weights as `version` on every live worker; returns each
        worker's version afterwards."""
        if not self.streaming:
            path = self.learner.export_weights(self.push_dir / "weights.safetensors")
            return self.pool.push_weights(str(path), version)
        if self.members != self.pool.live():
            self._connect()
        kill_point("push")
        self._send(version)
        self.version = version
        return self.pool.versions()

    def _connect(self, restarted: int | None = None) -> None:
        """(Re-)form the transfer group of the learner and every live worker."""
        import ray

        live = self.pool.live()
        if self.members is not None:  # members of the old group leave it first
            self.pool.call(
                [i for i in live if i in self.members and i != restarted],
                "shutdown_weight_transfer",
            )
        workers = [self.pool.workers[i] for i in live]
        client = WorkerClient(workers, self.ranks_per_worker)
        dtype = ray.get(workers[0].served_dtype.remote())
        world_size = 1 + len(workers) * self.ranks_per_worker
        if self.local is not None:
            address, port = ray.util.get_node_ip_address(), free_port()
            self.local.connect(self.backend, address, port, world_size, client, dtype)
        else:
            assert isinstance(self.learner, LearnerGroup)
            self.learner.connect_sync(self.backend, world_size, client, dtype)
        self.members = live

    def _send(self, version: int) -> None:
        if self.local is not None:
            self.local.send(version)
        else:
            assert isinstance(self.learner, LearnerGroup)
            self.learner.send_weights(version)

    def _catch_up(self, index: int) -> None:
        """Worker `index` was restarted with the starting weights: re-form the group and push
        the learner's weights to every live worker under the latest version."""
        if self.version is None:
            return  # nothing was pushed yet: the restarted worker serves the right weights
        log.warning(
            "Rollout worker %d restarted: re-forming the %s transfer group and pushing "
            "version %d again.",
            index,
            self.backend,
            self.version,
        )
        self._connect(restarted=index)
        self._send(self.version)

    def close(self) -> None:
        """Leave the transfer group and remove the push file."""
        if self.local is not None:
            self.local.close()
        shutil.rmtree(self.push_dir, ignore_errors=True)
