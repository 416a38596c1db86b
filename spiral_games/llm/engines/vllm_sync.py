"""Weight sync through vLLM's own RL weight-transfer API, plus `spiral_gloo`: a CPU backend.

vLLM (>= 0.20) moves new policy weights into a running engine with one protocol:
`init_weight_transfer_engine` once, then per push `start_weight_update` ->
`update_weights` (the worker receives while the trainer sends) -> `finish_weight_update`.
The worker side is a `WeightTransferEngine` built from `LLM(weight_transfer_config=...)`; the
trainer side is a `TrainerWeightTransferEngine` that drives that protocol through a client.
vLLM ships CUDA backends only (`nccl`: separate trainer and engine devices, other nodes;
`ipc`: the same GPU). `spiral_gloo` is the same protocol over a gloo group, so the trainer
side and the start/update/finish lifecycle are one code path on CPU and GPU:

- both factories learn it from `register()`, which runs wherever this module is imported: in
  the trainer, and in vLLM's worker processes through `vllm_worker` (the worker extension);
- the trainer (rank 0) opens a TCPStore + gloo group; every vLLM worker process joins at
  `rank_offset + its rank`;
- weights stream in the served dtype, in packs of at most PACK_BYTES (one broadcast each):
  neither side ever holds a second full copy of the model;
- the worker loads each tensor through vLLM's layer-wise reload, which re-runs each layer's
  post-load processing (on CPU: repacking the linear weights for its kernels) once the layer
  is complete.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, ClassVar, Self, cast

import torch
from vllm.distributed.weight_transfer.base import (
    ParamMeta,
    TrainerInitInfo,
    TrainerWeightTransferEngine,
    VLLMWeightSyncClient,
    WeightSource,
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)
from vllm.distributed.weight_transfer.factory import (
    WeightTransferEngineFactory,
    WeightTransferTrainerFactory,
)

from spiral_games.config.choices import SyncBackend

GLOO = SyncBackend.gloo.value  # the name vLLM's factories know our gloo engine by
RENDEZVOUS_TIMEOUT_S = 300.0
_registered = threading.Lock()


def register() -> None:
    """Teach both of vLLM's weight-transfer factories `spiral_gloo` (idempotent)."""
    with _registered:
        if GLOO not in WeightTransferEngineFactory._registry:
            WeightTransferEngineFactory.register_engine(GLOO, GlooWeightTransferEngine)
        if GLOO not in WeightTransferTrainerFactory._registry:
            WeightTransferTrainerFactory.register_engine(GLOO, GlooTrainerWeightTransferEngine)


# ---- the gloo group ------------------------------------------------------------------------


@dataclass
class GlooGroup:
    """A gloo process group and the TCPStore it met through (kept alive with it)."""

    group: Any  # torch's ProcessGroupGloo (an untyped binding)
    store: Any

    def broadcast(self, tensor: torch.Tensor) -> None:
        """Broadcast `tensor` from group rank 0 to every member, in place."""
        options = torch.distributed.BroadcastOptions()
        options.rootRank = 0
        self.group.broadcast([tensor], options).wait()


def gloo_group(address: str, port: int, rank: int, world_size: int) -> GlooGroup:
    """A gloo group of its own (not torch's default group, which a learner rank may already
    use for DeepSpeed): rank 0 hosts the TCPStore rendezvous at `address:port`."""
    from torch.distributed import PrefixStore, ProcessGroupGloo, TCPStore

    timeout = timedelta(seconds=RENDEZVOUS_TIMEOUT_S)
    store = TCPStore(address, port, world_size, is_master=rank == 0, timeout=timeout)
    options = ProcessGroupGloo._Options()  # type: ignore[attr-defined]  # untyped binding
    options._timeout = timeout
    # bind to the interface that reaches the trainer (not whatever the hostname resolves to)
    options._devices = [ProcessGroupGloo.create_device(hostname=_local_address(address, port))]
    group = ProcessGroupGloo(PrefixStore("spiral-weights", store), rank, world_size, options)
    return GlooGroup(group, store)


def _local_address(address: str, port: int) -> str:
    """This host's address on the route to `address` (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((address, port))
        return str(probe.getsockname()[0])


# ---- packing: tensors travel in buffers of up to PACK_BYTES (one broadcast each) ------------

PACK_BYTES = 64 << 20  # bounds the extra memory on each side; a larger tensor travels alone
_ALIGN = 64  # every tensor starts at a multiple of this in its pack (any dtype can view it)


@dataclass(frozen=True)
class Pack:
    """Consecutive tensors sent as one byte buffer: (index, byte offset) of each."""

    entries: tuple[tuple[int, int], ...]
    nbytes: int


def plan_packs(dtypes: Sequence[torch.dtype], shapes: Sequence[Sequence[int]]) -> list[Pack]:
    """Cut the tensors, in order, into packs of at most PACK_BYTES; both sides compute the
    same plan from the push's metadata, so nothing but the bytes crosses the wire."""
    packs: list[Pack] = []
    entries: list[tuple[int, int]] = []
    used = 0
    for i, (dtype, shape) in enumerate(zip(dtypes, shapes, strict=True)):
        size = math.prod(shape) * dtype.itemsize
        if entries and used + size > PACK_BYTES:
            packs.append(Pack(tuple(entries), used))
            entries, used = [], 0
        entries.append((i, used))
        used += -(-size // _ALIGN) * _ALIGN
    if entries:
        packs.append(Pack(tuple(entries), used))
    return packs


def unpack(
    buffer: torch.Tensor, offset: int, dtype: torch.dtype, shape: Sequence[int]
) -> torch.Tensor:
    """The tensor at `offset` of a received pack (a view: no copy)."""
    size = math.prod(shape) * dtype.itemsize
    return buffer[offset : offset + size].view(dtype).reshape(tuple(shape))


# ---- worker side (inside vLLM's worker process) -------------------------------------------


@dataclass
class GlooInitInfo(WeightTransferInitInfo):
    master_address: str
    master_port: int
    rank_offset: int  # this engine's first rank in the group (0 is the trainer)
    world_size: int  # 1 trainer + every worker process of every engine


@dataclass
class GlooUpdateInfo(WeightTransferUpdateInfo):
    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.dtype_names) == len(self.shapes):
            raise ValueError("names, dtype_names and shapes must have one entry per tensor.")


class GlooWeightTransferEngine(WeightTransferEngine[GlooInitInfo, GlooUpdateInfo]):
    """Receives checkpoint-format weights over gloo, one tensor at a time, into vLLM's
    layer-wise reload (as vLLM's NCCL engine does over NCCL)."""

    init_info_cls = GlooInitInfo
    update_info_cls = GlooUpdateInfo

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group: GlooGroup | None = None
        self.timing: dict[str, float] = {}  # the last push: receive_s, load_s, finalize_s

    def init_transfer_engine(self, init_info: GlooInitInfo) -> None:
        self.shutdown()  # a re-formed group (a restarted peer) replaces the old one
        rank = init_info.rank_offset + self.parallel_config.rank
        self.group = gloo_group(
            init_info.master_address, init_info.master_port, rank, init_info.world_size
        )

    def start_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        initialize_layerwise_reload(self.model)

    def receive_weights(self, update_info: GlooUpdateInfo) -> None:
        if self.group is None:
            raise RuntimeError("spiral_gloo: init_weight_transfer_engine was not called.")
        receive_s = load_s = 0.0
        dtypes = [getattr(torch, d) for d in update_info.dtype_names]
        for pack in plan_packs(dtypes, update_info.shapes):
            t0 = time.perf_counter()
            buffer = torch.empty(pack.nbytes, dtype=torch.uint8)
            self.group.broadcast(buffer)
            t1 = time.perf_counter()
            tensors = [
                (update_info.names[i], unpack(buffer, offset, dtypes[i], update_info.shapes[i]))
                for i, offset in pack.entries
            ]
            cast(Any, self.model).load_weights(tensors)
            del buffer, tensors
            receive_s, load_s = receive_s + t1 - t0, load_s + time.perf_counter() - t1
        self.timing = {"receive_s": receive_s, "load_s": load_s}

    def update_weights(self, update_info: dict[str, Any]) -> None:
        # the base class ends with torch.accelerator.synchronize(), which a CPU build lacks
        self.receive_weights(self.parse_update_info(update_info))

    def finish_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        t0 = time.perf_counter()
        finalize_layerwise_reload(self.model, self.model_config)
        self.timing["finalize_s"] = time.perf_counter() - t0

    def shutdown(self) -> None:
        self.group = None


# ---- trainer side ---------------------------------------------------------------------------


@dataclass
class GlooTrainerInitInfo(TrainerInitInfo):
    backend: ClassVar[str] = GLOO

    master_address: str
    master_port: int
    world_size: int


class GlooTrainerWeightTransferEngine(TrainerWeightTransferEngine[GlooTrainerInitInfo]):
    """Trainer side of `spiral_gloo`: rank 0 broadcasts each tensor of its `WeightSource`
    while the workers' `update_weights` receive it; other trainer ranks only iterate the
    source (a collective when ZeRO-3 gathers each layer)."""

    init_info_cls = GlooTrainerInitInfo

    def __init__(self, *, client: VLLMWeightSyncClient, source: WeightSource, is_sender: bool):
        super().__init__(client=client, source=source, is_sender=is_sender)
        self.group: GlooGroup | None = None

    @classmethod
    def trainer_init(
        cls,
        init_info: GlooTrainerInitInfo,
        *,
        client: VLLMWeightSyncClient,
        source: WeightSource | None = None,
    ) -> Self:
        if source is None:
            raise ValueError("spiral_gloo needs a WeightSource.")
        engine = cls(client=client, source=source, is_sender=init_info.is_sender)
        if not engine.is_sender:
            return engine
        worker_info = GlooInitInfo(
            init_info.master_address, init_info.master_port, 1, init_info.world_size
        )
        # the workers block in the rendezvous until the trainer opens it: both at once
        with ThreadPoolExecutor(max_workers=1) as pool:
            joined = pool.submit(client.init_weight_transfer_engine, asdict(worker_info))
            engine.group = gloo_group(
                init_info.master_address, init_info.master_port, 0, init_info.world_size
            )
            joined.result()
        return engine

    def send_weights(self) -> None:
        assert self.source is not None
        if not self.is_sender:
            for _ in self.source:  # stay in the trainer-side gathers
                pass
            return
        assert self.group is not None, "trainer_init() was not called"
        meta = self.source.metadata()
        info = GlooUpdateInfo(
            names=[m.name for m in meta],
            dtype_names=[str(m.dtype).removeprefix("torch.") for m in meta],
            shapes=[list(m.shape) for m in meta],
        )
        self.client.start_weight_update()
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            received = pool.submit(self.client.update_weights, asdict(info))
            stream = zip(meta, self.source, strict=True)
            for pack in plan_packs([m.dtype for m in meta], [m.shape for m in meta]):
                buffer = torch.empty(pack.nbytes, dtype=torch.uint8)
                for _, offset in pack.entries:  # the source yields one tensor at a time
                    expected, (name, tensor) = next(stream)
                    if name != expected.name or tuple(tensor.shape) != expected.shape:
                        raise RuntimeError(
                            f"WeightSource yielded {name} {tuple(tensor.shape)}, but its "
                            f"metadata promised {expected.name} {expected.shape}."
                        )
                    flat = tensor.to(expected.dtype).contiguous().view(-1).view(torch.uint8)
                    buffer[offset : offset + flat.numel()] = flat
                self.group.broadcast(buffer)
            received.result()
        finally:
            pool.shutdown(wait=False)  # a failed broadcast leaves the receivers blocked
        self.client.finish_weight_update()

    def shutdown(self) -> None:
        self.group = None


class StreamedWeights(WeightSource):
    """The trainer's weights as vLLM's `WeightSource`: `shapes` is what a push carries (names
    and full shapes, known without gathering), `stream` yields the tensors one at a time, and
    every tensor is cast to `dtype` (the dtype vLLM serves) as it goes."""

    def __init__(
        self,
        shapes: Sequence[tuple[str, tuple[int, ...]]],
        stream: Callable[[], Iterator[tuple[str, torch.Tensor]]],
        dtype: torch.dtype,
        device: str = "cpu",
    ) -> None:
        self.meta = [ParamMeta(name, dtype, tuple(shape)) for name, shape in shapes]
        self.stream = stream
        self.dtype = dtype
        self.device = device  # nccl sends from the GPU

    def metadata(self) -> list[ParamMeta]:
        return self.meta

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in self.stream():
            dtype = self.dtype if tensor.is_floating_point() else tensor.dtype
            yield name, tensor.to(device=self.device, dtype=dtype)


def trainer_engine(
    backend: SyncBackend,
    *,
    address: str,
    port: int,
    world_size: int,
    rank: int,
    client: VLLMWeightSyncClient,
    source: WeightSource,
) -> TrainerWeightTransferEngine:
    """The trainer side of `backend` (spiral_gloo | nccl), through vLLM's trainer
    factory; called on every learner rank (rank 0 sends)."""
    register()
    init_info: TrainerInitInfo
    if backend == SyncBackend.gloo:
        init_info = GlooTrainerInitInfo(address, port, world_size, rank=rank)
    elif backend == SyncBackend.nccl:
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        init_info = NCCLTrainerInitInfo(address, port, world_size, rank=rank)
    else:
        raise ValueError(f"No streaming weight-sync backend '{backend}': spiral_gloo or nccl.")
    return WeightTransferTrainerFactory.trainer_init(init_info, client=client, source=source)
