"""The learner side of streamed weight pushes: vLLM's trainer engine on each learner rank,
and the client through which it drives the rollout workers' engines."""

from __future__ import annotations

from typing import Any

from spiral_games.config.choices import SyncBackend
from spiral_games.learn.learner import Learner


class WorkerClient:
    """vLLM's `VLLMWeightSyncClient` over rollout-worker actors: every call fans out to each
    worker and waits for all of them.

    vLLM's trainer engines tell every engine `rank_offset=1` (one engine after the trainer);
    this client gives worker k ranks `1 + k * ranks_per_worker` onwards, so several engines
    (and tensor-parallel ones) share one group without colliding.
    """

    def __init__(self, workers: list[Any], ranks_per_worker: int) -> None:
        self.workers = workers
        self.ranks_per_worker = ranks_per_worker
        self.version = 0  # the version the next `finish_weight_update` serves

    def _all(self, refs: list[Any]) -> list[Any]:
        import ray

        return ray.get(refs)

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        infos = [
            {**init_info, "rank_offset": init_info["rank_offset"] + k * self.ranks_per_worker}
            if "rank_offset" in init_info
            else init_info
            for k in range(len(self.workers))
        ]
        self._all(
            [w.init_weight_transfer.remote(i) for w, i in zip(self.workers, infos, strict=True)]
        )

    def start_weight_update(self) -> None:
        self._all([w.start_weight_update.remote() for w in self.workers])

    def update_weights(self, update_info: Any) -> None:
        self._all([w.update_weights.remote(update_info) for w in self.workers])

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        version = int(weight_version) if weight_version is not None else self.version
        self._all([w.finish_weight_update.remote(version) for w in self.workers])


class TrainerSide:
    """One learner rank's part of a streamed push: on rank 0 it sends, on other ranks it only
    takes part in the gathers (ZeRO-3), through vLLM's trainer engine for `backend`."""

    def __init__(self, learner: Learner, rank: int) -> None:
        self.learner = learner
        self.rank = rank
        self.engine: Any = None
        self.client: WorkerClient | None = None

    def connect(
        self,
        backend: SyncBackend,
        address: str,
        port: int,
        world_size: int,
        client: WorkerClient | None,
        dtype: str,
    ) -> None:
        """Open (or re-open) the transfer group: blocks until every worker has joined."""
        import torch

        from spiral_games.llm.engines.vllm_sync import StreamedWeights, trainer_engine

        self.close()
        self.client = client
        device = "cuda" if backend == SyncBackend.nccl else "cpu"
        source = StreamedWeights(
            self.learner.weight_shapes(), self.learner.named_weights, getattr(torch, dtype), device
        )
        self.engine = trainer_engine(
            backend,
            address=address,
            port=port,
            world_size=world_size,
            rank=self.rank,
            client=client,  # type: ignore[arg-type]  # only rank 0 calls it
            source=source,
        )

    def send(self, version: int) -> None:
        """One push as `version`: every worker serves it once this returns (on rank 0)."""
        if self.rank > 0 and self.learner.spec.learner.zero_stage < 3:
            return  # the weights are whole on rank 0: nothing to gather
        if self.client is not None:
            self.client.version = version
        self.engine.send_weights()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None
