"""LearnerGroup: data-parallel DeepSpeed learner ranks as Ray actors (a thin adapter).

Each rank is a `Learner` in its own process; they join one torch.distributed group (gloo on
CPU, NCCL on GPU) and DeepSpeed averages their gradients. The batch is split across ranks;
rank 0 exports weights and writes the model, every rank writes its optimizer state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from spiral_games.actors.trainer_side import TrainerSide, WorkerClient
from spiral_games.config.choices import SyncBackend
from spiral_games.learn.learner import Learner, LearnerSpec, free_port
from spiral_games.types import TrainBatch


class LearnerRank:
    """The Ray actor body: one Learner, built once the group's address is known."""

    def __init__(self) -> None:
        self.learner: Learner | None = None
        self.sync: TrainerSide | None = None

    def address(self) -> tuple[str, int]:
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def setup(self, spec: LearnerSpec, rank: int, world: int, addr: str, port: int) -> None:
        self.learner = Learner(spec, rank, world, addr, port)
        self.sync = TrainerSide(self.learner, rank)

    def connect_sync(
        self,
        backend: SyncBackend,
        addr: str,
        port: int,
        world_size: int,
        client: WorkerClient | None,
        dtype: str,
    ) -> None:
        assert self.sync is not None, "setup() was not called"
        self.sync.connect(backend, addr, port, world_size, client, dtype)

    def send_weights(self, version: int) -> None:
        assert self.sync is not None, "setup() was not called"
        self.sync.send(version)

    def update(self, batch: TrainBatch) -> dict[str, float]:
        return self._learner.update(batch)

    def export_weights(self, path: str) -> str:
        return str(self._learner.export_weights(Path(path)))

    def save(self, directory: str) -> None:
        self._learner.save(Path(directory))

    def load_optimizer(self, directory: str) -> None:
        self._learner.load_optimizer(Path(directory))

    def rng_state(self) -> object:
        return self._learner.rng_state()

    def set_rng_state(self, state: object) -> None:
        self._learner.set_rng_state(state)

    def logprobs(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        return self._learner.logprobs(prompts, responses)

    def probe_scores(
        self, prompt: list[int], response: list[int]
    ) -> tuple[list[float], list[float]]:
        return self._learner.probe_scores(prompt, response)

    def parameters_checksum(self) -> float:
        """Sum of the full weights (LoRA merged): equal on every rank after a synchronous update.
        Under ZeRO-3 they are gathered module by module, so every rank must call it."""
        return float(sum(t.double().sum() for _, t in self._learner.named_weights()))

    @property
    def _learner(self) -> Learner:
        assert self.learner is not None, "setup() was not called"
        return self.learner


class LearnerGroup:
    """The same interface as `Learner`, over `world_size` Ray actor ranks."""

    def __init__(self, spec: LearnerSpec) -> None:
        """`learner.num_ranks` ranks of `learner.cpus_per_rank`/`gpus_per_rank` each."""
        import ray

        learner = spec.learner
        world_size = learner.num_ranks
        actor = ray.remote(LearnerRank).options(
            num_cpus=learner.cpus_per_rank, num_gpus=learner.gpus_per_rank
        )
        # Any: Ray types a handle as `ActorHandle[T] | type[T]`, so its methods lack `.remote`
        self.ranks: list[Any] = [actor.remote() for _ in range(world_size)]
        addr, port = ray.get(self.ranks[0].address.remote())
        ray.get([r.setup.remote(spec, i, world_size, addr, port) for i, r in enumerate(self.ranks)])

    def update(self, batch: TrainBatch) -> dict[str, float]:
        """Split the batch over the ranks, update in lock-step, average the metrics."""
        import ray

        n = len(self.ranks)
        # every rank takes as many samples (and so optimizer steps, each an all-reduce) as the
        # others: at most n-1 samples are left out, and counted
        used = len(batch.samples) - len(batch.samples) % n
        parts = [TrainBatch(batch.samples[:used][i::n], batch.step) for i in range(n)]
        results = ray.get([r.update.remote(p) for r, p in zip(self.ranks, parts, strict=True)])
        summed = ("train/tokens", "train/tokens_per_s", "train/samples")
        merged = {k: _merge(k, summed)([m[k] for m in results]) for k in results[0]}
        return {**merged, "train/samples_left_out": float(len(batch.samples) - used)}

    def export_weights(self, path: Path) -> Path:
        """Rank 0 writes the file; every rank takes part (ZeRO-3 gathers are collectives)."""
        import ray

        paths = ray.get([r.export_weights.remote(str(path)) for r in self.ranks])
        return Path(paths[0])

    def connect_sync(
        self, backend: SyncBackend, world_size: int, client: WorkerClient, dtype: str
    ) -> None:
        """Open the streamed-push group: rank 0 sends to `client`'s workers, the other ranks
        only join the gathers."""
        import ray

        addr, port = ray.get(self.ranks[0].address.remote())
        ray.get(
            [
                r.connect_sync.remote(
                    backend, addr, port, world_size, client if i == 0 else None, dtype
                )
                for i, r in enumerate(self.ranks)
            ]
        )

    def send_weights(self, version: int) -> None:
        """One streamed push, as `version`, on every rank at once."""
        import ray

        ray.get([r.send_weights.remote(version) for r in self.ranks])

    def save(self, directory: Path) -> None:
        import ray

        ray.get([r.save.remote(str(directory)) for r in self.ranks])

    def load_optimizer(self, directory: Path) -> None:
        import ray

        ray.get([r.load_optimizer.remote(str(directory)) for r in self.ranks])

    def rng_state(self) -> list[Any]:
        import ray

        return ray.get([r.rng_state.remote() for r in self.ranks])

    def set_rng_state(self, state: list[Any]) -> None:
        import ray

        ray.get([r.set_rng_state.remote(s) for r, s in zip(self.ranks, state, strict=True)])

    def logprobs(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        """Rank 0's answer; every rank runs the forward (under ZeRO-3 it gathers each layer)."""
        import ray

        return ray.get([r.logprobs.remote(prompts, responses) for r in self.ranks])[0]

    def probe_scores(
        self, prompt: list[int], response: list[int]
    ) -> tuple[list[float], list[float]]:
        """Rank 0's answer; every rank runs the forward (a collective under ZeRO-3)."""
        import ray

        return ray.get([r.probe_scores.remote(prompt, response) for r in self.ranks])[0]

    def checksums(self) -> list[float]:
        import ray

        return ray.get([r.parameters_checksum.remote() for r in self.ranks])

    def shutdown(self) -> None:
        import ray

        for r in self.ranks:
            ray.kill(r)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _merge(key: str, summed: tuple[str, ...]) -> Callable[[list[float]], float]:
    """How the ranks' values of one metric combine: summed, the largest (`*_max`), or mean."""
    if key in summed:
        return sum
    return max if key.endswith("_max") else _mean
