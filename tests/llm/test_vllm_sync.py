"""spiral_gloo's wire format: tensors packed into bounded byte buffers and read back as views."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

from spiral_games.llm.engines import vllm_sync  # noqa: E402
from spiral_games.llm.engines.vllm_sync import PACK_BYTES, plan_packs, unpack  # noqa: E402


def test_packs_round_trip_mixed_dtypes_and_stay_bounded():
    torch.manual_seed(0)
    tensors = [
        torch.randn(3, 5).to(torch.bfloat16),
        torch.randint(0, 9, (7,)),
        torch.randn(11),
        torch.randn(PACK_BYTES // 4 + 1),  # bigger than a pack: travels alone
        torch.randn(2, 2).to(torch.float16),
    ]
    packs = plan_packs([t.dtype for t in tensors], [t.shape for t in tensors])
    assert [[i for i, _ in p.entries] for p in packs] == [[0, 1, 2], [3], [4]]
    assert all(p.nbytes <= PACK_BYTES for p in packs if len(p.entries) > 1)
    for pack in packs:
        buffer = torch.zeros(pack.nbytes, dtype=torch.uint8)
        for i, offset in pack.entries:  # what the trainer writes
            flat = tensors[i].contiguous().view(-1).view(torch.uint8)
            buffer[offset : offset + flat.numel()] = flat
        for i, offset in pack.entries:  # what the worker reads
            got = unpack(buffer, offset, tensors[i].dtype, list(tensors[i].shape))
            assert got.dtype == tensors[i].dtype and torch.equal(got, tensors[i])


def test_spiral_gloo_is_registered_in_both_vllm_factories():
    from vllm.distributed.weight_transfer.factory import (
        WeightTransferEngineFactory,
        WeightTransferTrainerFactory,
    )

    vllm_sync.register()
    vllm_sync.register()  # idempotent: vLLM refuses a second registration of a name
    assert WeightTransferEngineFactory._registry[vllm_sync.GLOO]() is (
        vllm_sync.GlooWeightTransferEngine
    )
    assert WeightTransferTrainerFactory._registry[vllm_sync.GLOO]() is (
        vllm_sync.GlooTrainerWeightTransferEngine
    )
