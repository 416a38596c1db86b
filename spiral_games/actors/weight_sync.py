"""WeightSync: the trainer's one way to push new weights to every rollout worker.

Backends (`rollout.weight_sync`, resolved by `config.hardware.choose_weight_sync`):

- `file`: the learner writes one safetensors file to /dev/shm and every worker reloads it
  (other nodes get its bytes through Ray's object store). The transformers engine's path.
- `spiral_gloo` (CPU, or GPUs without a learner GPU of its own) and `nccl` (learner and rollout
  GPUs apart, other nodes): vLLM's weight-transfer API. Learner rank 0 streams the weights in
  packs (ZeRO-3 gathers one module at a time on every rank) into each engine's
  start/update/finish protocol; the trainer side is vLLM's `TrainerWeightTransferEngine`.

Every push carries its version. A worker that Ray restarts (mid-call or while idle), or a worker
set that shrinks when a node leaves, makes the next push re-form the transfer group; a worker
restarted mid-collection is caught up at once: every live worker gets the learner's current
weights, labelled with the step they come from (`trained`). A push that fails is a
`RolloutError`, so the trainer checkpoints its completed steps before it stops.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from spiral_games.actors.learner_group import LearnerGroup
from spiral_games.actors.rollout_pool import RolloutPool
from spiral_games.actors.trainer_side import TrainerSide, WorkerClient
from spiral_games.config.choices import EngineKind, SyncBackend
from spiral_games.config.hardware import ram_tmp_dir
from spiral_games.errors import RolloutError
from spiral_games.faults import kill_point
from spiral_games.learn.learner import Learner, free_port

log = logging.getLogger(__name__)
PUSH_DIR_PREFIX = "spiral-weights-"


def sweep_stale_push_dirs(root: Path) -> list[Path]:
    """Remove the push directories under `root` whose run is gone (a SIGKILL leaves its own
    behind: up to a model's size of RAM in /dev/shm each); returns what was removed. A directory
    is named `spiral-weights-<pid>-<random>`; one whose pid runs no process is stale. Older
    names without a pid are stale once nothing has touched them for a day."""
    removed = []
    for path in root.glob(f"{PUSH_DIR_PREFIX}*"):
        pid = path.name.removeprefix(PUSH_DIR_PREFIX).split("-", 1)[0]
        if pid.isdigit():
            stale = not _alive(int(pid))
        else:
            try:
                stale = time.time() - path.stat().st_mtime > 86400
            except OSError:
                continue
        if stale and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class WeightSync:
    """Pushes the learner's weights to the pool's live workers, with the plan's backend (`file`
    where any worker runs transformers, e.g. after `rollout.engine=auto` fell back)."""

    def __init__(
        self,
        learner: Learner | LearnerGroup,
        pool: RolloutPool,
        backend: SyncBackend,
        ranks_per_worker: int,
    ) -> None:
        """`backend` as the plan resolved it; `ranks_per_worker`: each engine's processes
        (rollout.tensor_parallel_size)."""
        engines = {info["engine"] for info in pool.engine_infos()}
        if backend != SyncBackend.file and engines != {EngineKind.vllm}:
            log.warning(
                "rollout.weight_sync=%s needs vLLM in every worker, and some run %s: pushing "
                "through a file instead.",
                backend,
                ", ".join(sorted(engines - {EngineKind.vllm})),
            )
            backend = SyncBackend.file
        self.learner, self.pool, self.backend = learner, pool, backend
        self._push_dir: Path | None = None  # made on the first file push
        self.ranks_per_worker = ranks_per_worker
        self.version: int | None = None  # the version the workers serve (None: the start's)
        self.learner_version: int | None = None  # the step the learner's weights come from
        self.members: dict[int, str] = {}  # worker index -> incarnation, in the transfer group
        # an overlapped collection runs (`actors.overlap`): a restarted worker waits for the
        # next push, since the learner's weights are mid-update
        self.defer_catch_up = False
        self.local = TrainerSide(learner, 0) if isinstance(learner, Learner) else None
        if backend != SyncBackend.file:
            pool.catch_up = self._catch_up

    @property
    def streaming(self) -> bool:
        return self.backend != SyncBackend.file

    @property
    def push_dir(self) -> Path:
        """This run's directory for file pushes (RAM-backed where /dev/shm exists), named after
        this process so a later run can remove it if this one is killed."""
        if self._push_dir is None:
            root = ram_tmp_dir() or tempfile.gettempdir()
            sweep_stale_push_dirs(Path(root))
            self._push_dir = Path(
                tempfile.mkdtemp(prefix=f"{PUSH_DIR_PREFIX}{os.getpid()}-", dir=root)
            )
        return self._push_dir

    def trained(self, step: int) -> None:
        """The learner's weights now come from `step` (what a catch-up serves)."""
        self.learner_version = step

    def push(self, version: int) -> list[int]:
        """Serve the learner's current weights as `version` on every live worker; returns each
        worker's version afterwards.

        Raises:
            RolloutError: the push failed (a worker or the transfer group died).
        """
        try:
            if not self.streaming:
                path = self.learner.export_weights(self.push_dir / "weights.safetensors")
                versions = self.pool.push_weights(str(path), version)
            else:
                if self.members != self._incarnations():
                    self._connect()
                kill_point("push")
                self._send(version)
                versions = self.pool.versions()
        except RolloutError:
            raise
        except Exception as exc:  # Ray, gloo and NCCL fail in many ways; one error for all
            raise RolloutError(
                f"Pushing weights version {version} ({self.backend}) failed: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
                "Completed steps are checkpointed; resume with train.resume=true."
            ) from exc
        self.version = self.learner_version = version
        return versions

    def _incarnations(self) -> dict[int, str]:
        live = self.pool.live()
        return dict(zip(live, self.pool.incarnations(live), strict=True))

    def _connect(self) -> None:
        """(Re-)form the transfer group of the learner and every live worker; the workers of
        the old group that are still the same processes leave it first."""
        import ray

        now = self._incarnations()
        self.pool.leave_weight_transfer(
            [i for i, token in now.items() if self.members.get(i) == token]
        )
        workers = [self.pool.workers[i] for i in now]
        client = WorkerClient(workers, self.ranks_per_worker)
        dtype = ray.get(workers[0].served_dtype.remote())
        world_size = 1 + len(workers) * self.ranks_per_worker
        if self.local is not None:
            address, port = ray.util.get_node_ip_address(), free_port()
            self.local.connect(self.backend, address, port, world_size, client, dtype)
        else:
            assert isinstance(self.learner, LearnerGroup)
            self.learner.connect_sync(self.backend, world_size, client, dtype)
        self.members = now

    def _send(self, version: int) -> None:
        if self.local is not None:
            self.local.send(version)
        else:
            assert isinstance(self.learner, LearnerGroup)
            self.learner.send_weights(version)

    def _catch_up(self, index: int) -> None:
        """Worker `index` was restarted mid-call with the starting weights. Streamed weights
        are not kept anywhere but in the learner, so every live worker gets the learner's
        weights again, labelled with the step they come from."""
        if self.version is None:
            return  # nothing was pushed yet: every worker serves the starting weights
        if self.defer_catch_up:
            log.warning(
                "Rollout worker %d restarted during an overlapped collection: it plays on the "
                "starting weights (those episodes are dropped as too stale) until the next push.",
                index,
            )
            return
        version = self.learner_version if self.learner_version is not None else self.version
        log.warning(
            "Rollout worker %d restarted: re-forming the %s transfer group and pushing "
            "version %d to every worker.",
            index,
            self.backend,
            version,
        )
        self.push(version)

    def close(self) -> None:
        """Leave the transfer group and remove the push file."""
        if self.local is not None:
            self.local.close()
        if self._push_dir is not None:
            shutil.rmtree(self._push_dir, ignore_errors=True)
