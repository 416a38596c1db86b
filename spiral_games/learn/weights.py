"""A model's weights streamed module by module under their plain HF names, LoRA merged in."""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

import torch

# one entry per output tensor: its HF name, the parameter or buffer it comes from, and whether
# it is a LoRA layer's base weight (which gets the adapters' delta added)
Entry = tuple[str, torch.Tensor, bool]
# the modules in state_dict order: the module whose parameters one gather covers, its entries
Piece = tuple[torch.nn.Module, list[Entry]]
Layout = list[tuple[str, tuple[int, ...], torch.dtype]]  # name, full shape, dtype as streamed
# makes a module's parameters whole for the duration of the context (ZeRO-3's gather)
Gather = Callable[[Sequence[torch.Tensor]], AbstractContextManager[object]]

SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def pieces(root: torch.nn.Module, lora_layer: type | None = None) -> Iterator[Piece]:
    """`root`'s modules in the order `state_dict` visits them, each with the entries it owns:
    its parameters and persistent buffers, named as the plain HF `state_dict` names them.

    A module of type `lora_layer` (peft's `LoraLayer`) stands for the plain layer it wraps: its
    base layer's tensors under the wrapper's name, adapters left out (merged into the weight).
    A tensor met a second time (a tied lm_head) is left out, as `save_pretrained` leaves it.
    """
    seen: set[int] = set()

    def fresh(entries: Iterable[Entry]) -> list[Entry]:
        kept = [e for e in entries if id(e[1]) not in seen]
        seen.update(id(e[1]) for e in kept)
        return kept

    def walk(module: torch.nn.Module, prefix: str) -> Iterator[Piece]:
        if lora_layer is not None and isinstance(module, lora_layer):
            base: torch.nn.Module = cast(Any, module).get_base_layer()
            own = [
                (prefix + n, p, n == "weight") for n, p in base._parameters.items() if p is not None
            ]
            yield module, fresh(own)
            return
        params = [(prefix + n, p, False) for n, p in module._parameters.items() if p is not None]
        buffers = [
            (prefix + n, b, False)
            for n, b in module._buffers.items()
            if b is not None and n not in module._non_persistent_buffers_set
        ]
        yield module, fresh(params + buffers)
        for name, child in module._modules.items():
            if child is not None:
                yield from walk(child, prefix + name + ".")

    yield from walk(root, "")


def layout(
    root: torch.nn.Module,
    lora_layer: type | None,
    dtype: torch.dtype | None,
    full_shape: Callable[[torch.Tensor], tuple[int, ...]],
) -> Layout:
    """Names, full shapes (`full_shape` of each tensor, read without gathering it) and dtypes of
    what `stream` yields, in its order."""
    return [
        (name, full_shape(t), _cast_dtype(t, dtype))
        for _, entries in pieces(root, lora_layer)
        for name, t, _ in entries
    ]


def stream(
    root: torch.nn.Module,
    lora_layer: type | None,
    dtype: torch.dtype | None,
    gather: Gather,
    copy: bool,
) -> Iterator[tuple[str, torch.Tensor]]:
    """`(name, tensor)` for every entry of `pieces`, one module at a time: detached, contiguous
    CPU tensors, floating ones cast to `dtype` (when given).

    Each module's parameters (a LoRA layer's adapters too) are made whole with `gather`, copied
    out (`copy`: always, as a gathered tensor is freed on release; else only as far as a device
    move or a cast needs) and released before they are yielded, so no more than one module is
    ever whole at once.
    """
    for module, entries in pieces(root, lora_layer):
        if not entries:
            continue
        is_lora = lora_layer is not None and isinstance(module, lora_layer)
        params: list[torch.Tensor] = (
            list(module.parameters()) if is_lora else [t for _, t, _ in entries]
        )
        with gather(params):
            out = [
                (name, _to_cpu(_merged(module, t) if merge else t, dtype, copy))
                for name, t, merge in entries
            ]
        yield from out


def write_safetensors(
    path: Path, layout: Layout, tensors: Iterable[tuple[str, torch.Tensor]]
) -> None:
    """Write `tensors` (yielded in `layout`'s order) to one safetensors file, holding one tensor
    at a time: the header (names, dtypes, shapes, offsets) comes from `layout` up front.

    `safetensors.torch.save_file` takes a whole dict; the format itself is an 8-byte length, a
    JSON header and the tensors' bytes back to back, so it can be written as a stream.
    """
    assert sys.byteorder == "little", "safetensors stores little-endian bytes"
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, dtype in layout:
        size = math.prod(shape) * dtype.itemsize
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the tensor data starts 8-byte aligned, as safetensors does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for (name, tensor), (want, shape, dtype) in zip(tensors, layout, strict=True):
            if (name, tuple(tensor.shape), tensor.dtype) != (want, shape, dtype):
                raise ValueError(f"{name} {tuple(tensor.shape)} {tensor.dtype}: expected {want}")
            f.write(tensor.reshape(-1).view(torch.uint8).numpy().data)


def _cast_dtype(t: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    return dtype if dtype is not None and t.is_floating_point() else t.dtype


def _to_cpu(t: torch.Tensor, dtype: torch.dtype | None, copy: bool) -> torch.Tensor:
    return t.detach().to("cpu", dtype=_cast_dtype(t, dtype), copy=copy).contiguous()


def _merged(layer: Any, weight: torch.Tensor) -> torch.Tensor:
    """A LoRA layer's base weight with its active, unmerged adapters added: W + scale * B @ A,
    as peft's `merge_and_unload` computes it (plain LoRA: no DoRA, no LoRA bias)."""
    merged = weight.detach()
    if layer.disable_adapters:
        return merged
    for adapter in layer.active_adapters:
        if adapter in layer.lora_A and adapter not in layer.merged_adapters:
            merged = merged + layer.get_delta_weight(adapter).to(merged.dtype)
    return merged
