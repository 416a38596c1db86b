"""After every push path, a prompt whose prefix vLLM has cached is answered by the new weights:
the greedy answer changes to the new model's, and its log-probs match a transformers fp32
forward pass on the new weights. One vLLM engine (tiny model, fp32, spiral_gloo) serves the
module; each test pushes a different perturbation of the embeddings and q/k/v projections, so
the cached prompt's keys and values change with it."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from spiral_games.config.schema import RolloutConfig
from spiral_games.llm.engines.base import EngineSpec
from spiral_games.llm.prompting import encode_user_message

pytest.importorskip("vllm")
# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = [pytest.mark.slow, pytest.mark.vllm]

from spiral_games.llm.engines import vllm_freshness as fresh  # noqa: E402
from spiral_games.llm.engines.vllm import VLLMEngine  # noqa: E402

TEXT = " ".join(f"Square {i} holds {'XO'[i % 2]}; the next mark goes beside it." for i in range(9))


@pytest.fixture(scope="module")
def engine(tiny):
    # the NCCL test hands the engine's worker a function (collective_rpc with a callable),
    # which vLLM sends only when this is set before its processes start
    saved = os.environ.get("VLLM_ALLOW_INSECURE_SERIALIZATION")
    os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"
    spec = EngineSpec.from_rollout(
        "vllm", tiny.path, RolloutConfig(max_model_len=512), dtype="float32", seed=0
    )
    served = VLLMEngine(dataclasses.replace(spec, weight_sync="spiral_gloo"))
    yield served
    served.close()
    if saved is None:
        os.environ.pop("VLLM_ALLOW_INSECURE_SERIALIZATION", None)
    else:
        os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = saved


@pytest.fixture(scope="module")
def prompt(tiny):
    ids = encode_user_message(tiny.tokenizer, TEXT)
    assert len(ids) >= 3 * 32  # several full 32-token blocks for the prefix cache to hold
    return ids


def new_model(tiny, seed):
    """The tiny model in fp32 with its K/V-relevant weights perturbed by `seed`."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny.path, dtype=torch.float32).eval()
    fresh.perturb(model, seed, scale=30.0)  # tiny-random repeats its last token below ~10
    return model


def check(engine, model, prompt, push, path, tiny):
    result = fresh.check_push(engine, model, prompt, push, path, tiny.tokenizer.pad_token_id or 0)
    print(result.as_dict())
    assert result.cached_before > 0, "the prompt was not in vLLM's prefix cache before the push"
    assert result.answers_after[0] != result.answer_before, "the push did not change the answer"
    assert result.answers_after[0] == result.expected, "the answer is not the new model's"
    assert result.answers_after[1] == result.answers_after[0]  # from the refilled cache
    assert result.max_logprob_error <= fresh.LOGPROB_ATOL
    assert result.passed
    return result


def test_file_push_answers_a_cached_prompt_with_the_new_weights(engine, prompt, tiny, tmp_path):
    """Also the control that makes the check mean something: the same reload without the
    prefix-cache reset (the file path's collective_rpc alone) answers from the old K/V, and the
    check sees it."""
    model = new_model(tiny, seed=1)
    path = fresh.export(model, tmp_path / "new.safetensors")

    def stale_push():
        engine.llm.collective_rpc("reload_from_safetensors", args=(str(path),))

    stale = fresh.check_push(engine, model, prompt, stale_push, "file, no reset", 0)
    assert stale.cached_before > 0
    assert stale.max_logprob_error > 10 * fresh.LOGPROB_ATOL, stale.as_dict()
    assert not stale.passed

    model = new_model(tiny, seed=2)  # differs from what is served now, stale cache or not
    check(engine, model, prompt, lambda: fresh.push_file(engine, model, 1, tmp_path), "file", tiny)
    assert engine.version == 1


def test_gloo_stream_answers_a_cached_prompt_with_the_new_weights(engine, prompt, tiny):
    """rollout.weight_sync=gloo: vLLM's trainer engine streams the weights over spiral_gloo."""
    model = new_model(tiny, seed=3)
    check(engine, model, prompt, lambda: fresh.push_streamed(engine, model, 2), "spiral_gloo", tiny)
    assert engine.version == 2


def _use_nccl_receiver(worker):
    """In vLLM's worker: its weight-transfer engine becomes vLLM's own NCCL engine."""
    from vllm.config import WeightTransferConfig
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory

    worker.spiral_saved_engine = worker.weight_transfer_engine
    worker.weight_transfer_engine = WeightTransferEngineFactory.create_engine(
        WeightTransferConfig(backend="nccl"),
        worker.vllm_config,
        worker.device,
        worker.model_runner.get_model(),
    )
    return type(worker.weight_transfer_engine).__name__


def _receive_as_nccl_does(worker, path):
    """What the NCCL engine's `receive_weights` does with each tensor once its broadcast has
    arrived (unpacked): hand it to the model's `load_weights`."""
    from safetensors.torch import load_file

    model = worker.weight_transfer_engine.model
    for name, tensor in load_file(path).items():
        model.load_weights([(name, tensor)])


def _restore_receiver(worker):
    worker.weight_transfer_engine = worker.spiral_saved_engine


def test_nccl_path_cpu_parts_answer_a_cached_prompt_with_the_new_weights(
    engine, prompt, tiny, tmp_path
):
    """What of rollout.weight_sync=nccl runs without CUDA. Trainer side: vLLM's NCCL sender
    checks that the learner's `StreamedWeights` yields what its metadata promised, name, dtype
    and shape. Worker side: vLLM's `NCCLWeightTransferEngine` runs the engine's start -> receive
    -> finish lifecycle (`VLLMEngine.start_weight_update`, `finish_weight_update`), the NCCL
    broadcast alone replaced by handing over the same tensors."""
    from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerWeightTransferEngine

    model = new_model(tiny, seed=4)
    source = fresh.streamed(model, torch.float32)
    sent = list(NCCLTrainerWeightTransferEngine._checked_iter(source, source.metadata()))
    assert [n for n, _ in sent] == [n for n, _ in model.named_parameters()]

    path = fresh.export(model, tmp_path / "nccl.safetensors")

    def push():
        engine.start_weight_update()
        engine.llm.collective_rpc(_receive_as_nccl_does, args=(str(path),))
        engine.finish_weight_update(3)

    assert engine.llm.collective_rpc(_use_nccl_receiver) == ["NCCLWeightTransferEngine"]
    try:
        check(engine, model, prompt, push, "nccl (CPU parts)", tiny)
    finally:
        engine.llm.collective_rpc(_restore_receiver)
    assert engine.version == 3
