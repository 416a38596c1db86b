"""The DeepSpeed learner on the CPU: updates, LoRA mode, KL to a reference, checkpoints."""

from __future__ import annotations

import dataclasses
import math
import types

import pytest
import torch
from safetensors.torch import load_file

from spiral_games.config.schema import ASYNC_TIS_CAP
from spiral_games.learn.learner import Learner, LearnerSpec
from spiral_games.types import Sample, TrainBatch

from ..tiny_run import tiny_config

# every test here starts Ray, vLLM, a DeepSpeed learner or a subprocess: not the fast lane
pytestmark = pytest.mark.slow


def spec(tiny, *overrides):
    cfg = tiny_config(
        "learner.lr=1e-2",
        "learner.batch_size=4",
        "learner.minibatch_size=2",
        "learner.micro_batch_size=1",
        *overrides,
        rollout=False,
        trainer=False,
    )
    return LearnerSpec.from_run(cfg, tiny.path)


def batch():
    samples = tuple(
        Sample((1, 2, 3), (4, 5), (-10.8, -10.8), adv, "kuhn", 0, 0)
        for adv in (1.0, -1.0, 0.5, 2.0)
    )
    return TrainBatch(samples, step=0)


def test_update_takes_one_optimizer_step_per_minibatch_and_moves_weights(tiny):
    learner = Learner(spec(tiny))
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    metrics = learner.update(batch())
    assert metrics["train/optimizer_steps"] == 2.0  # 4 samples / minibatch 2
    assert metrics["train/grad_norm"] > 0
    assert any(not torch.equal(before[k], v) for k, v in learner.model.state_dict().items())


def _gradients_at_each_step(learner: Learner) -> list[dict[str, torch.Tensor]]:
    """Record the accumulated gradients every time the learner takes an optimizer step."""
    seen: list[dict[str, torch.Tensor]] = []
    step = learner.engine.step

    def recording_step() -> None:
        seen.append({n: p.grad.clone() for n, p in learner.model.named_parameters()})
        step()

    learner.engine.step = recording_step
    return seen


def test_a_partial_last_minibatch_is_trained_on_as_the_mean_of_its_own_samples(tiny):
    # 3 samples of different lengths: minibatch 4 / micro 2 gives one step over micros of 2 + 1;
    # one micro of 3 must give the same gradient (the mean over the 3 samples)
    samples = tuple(
        Sample((1, 2, 3), response, tuple(-10.8 for _ in response), adv, "kuhn", 0, 0)
        for response, adv in (((4, 5), 1.0), ((6,), -1.0), ((7, 8, 9), 0.5))
    )
    fp32 = "learner.bf16=false"
    split = Learner(spec(tiny, "learner.minibatch_size=4", "learner.micro_batch_size=2", fp32))
    whole = Learner(spec(tiny, "learner.minibatch_size=3", "learner.micro_batch_size=3", fp32))
    split_grads, whole_grads = _gradients_at_each_step(split), _gradients_at_each_step(whole)
    metrics = split.update(TrainBatch(samples, step=0))
    whole.update(TrainBatch(samples, step=0))
    assert metrics["train/optimizer_steps"] == 1.0 and metrics["train/samples"] == 3.0
    assert len(split_grads) == len(whole_grads) == 1
    for name, grad in whole_grads[0].items():
        scale = float(grad.abs().max())  # float sums in another order: relative to the tensor
        assert float((split_grads[0][name] - grad).abs().max()) <= 1e-5 * scale, name
    assert any(float(g.abs().max()) > 1e-4 for g in whole_grads[0].values())


def test_lora_trains_only_adapters_and_exports_merged_weights(tiny, tmp_path):
    learner = Learner(spec(tiny, "learner.lora_rank=4"))
    trainable = [n for n, p in learner.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    base = load_file(str(tiny.path / "model.safetensors"))
    learner.update(batch())
    pushed = load_file(str(learner.export_weights(tmp_path / "w.safetensors")))
    assert set(pushed) == set(base)  # plain HF names: what the engines load
    assert any(not torch.equal(base[k], pushed[k]) for k in base)
    learner.save(tmp_path / "ckpt")
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / "adapter").is_dir()


def test_kl_to_the_frozen_reference_grows_as_the_policy_moves(tiny):
    learner = Learner(spec(tiny, "learner.kl_coef=0.1", "learner.epochs=2"))
    metrics = learner.update(batch())
    assert metrics["train/kl_to_ref"] > 0
    assert learner.reference is not None
    assert all(not p.requires_grad for p in learner.reference.parameters())


def test_optimizer_state_round_trips_with_weights_only_loading(tiny, tmp_path):
    learner = Learner(spec(tiny))
    learner.update(batch())
    learner.save(tmp_path)
    other = Learner(spec(tiny))
    other.load_optimizer(tmp_path)
    a, b = learner.optimizer.state_dict(), other.optimizer.state_dict()
    assert a["state"].keys() == b["state"].keys()
    first = next(iter(a["state"]))
    assert torch.equal(a["state"][first]["exp_avg"], b["state"][first]["exp_avg"])


def test_reinforce_mode_and_bad_loss_name(tiny):
    learner = Learner(spec(tiny, "learner.loss=reinforce"))
    assert learner.update(batch())["train/clip_fraction"] == 0.0
    from spiral_games.errors import ConfigError

    with pytest.raises(ConfigError, match=r"learner\.loss='a2c'"):
        spec(tiny, "learner.loss=a2c")


def test_named_weights_streams_the_hf_state_dict_names_in_model_order(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    learner = Learner(spec(tiny))
    learner.update(batch())
    stream = learner.named_weights()
    assert isinstance(stream, types.GeneratorType)  # lazy: every rank iterates it in lock-step
    plain = AutoModelForCausalLM.from_pretrained(str(tiny.path)).state_dict()
    assert learner.tied  # tiny-random ties lm_head to embed_tokens: the head is left out
    expected = [name for name in plain if name != "lm_head.weight"]
    weights = list(stream)
    assert [name for name, _ in weights] == expected
    live = learner.model.state_dict()
    assert all(t.device.type == "cpu" and torch.equal(t, live[name]) for name, t in weights)
    assert learner.weight_shapes() == [(name, tuple(t.shape)) for name, t in weights]
    assert {t.dtype for _, t in learner.named_weights(torch.bfloat16)} == {torch.bfloat16}
    exported = load_file(str(learner.export_weights(tmp_path / "w.safetensors")))
    assert exported.keys() == set(expected)
    assert all(torch.equal(exported[name], t) for name, t in weights)


def assert_same_training(got: dict, expected: dict, lr: float) -> None:
    """`got` holds the same tensor names, in order, as `expected` and the same weights up to
    fp32 summation order. ZeRO-3's hooks sit in the autograd graph, so a tensor's gradient
    contributions add up in another order (~2e-7 relative). Adam's first steps, g / (|g| + 1e-8),
    magnify that on the few entries whose gradient is near 1e-8: a handful of weights differ by
    up to ~1e-2 lr, and all but 0.1% agree to 1e-6 (updates move them by ~lr per step)."""
    assert list(got) == list(expected)
    off, total = 0, 0
    for name, want in expected.items():
        diff = (got[name] - want).abs()
        assert float(diff.max()) <= 2e-2 * lr, name
        off, total = off + int((diff > 1e-6).sum()), total + want.numel()
    assert off <= 1e-3 * total, f"{off} of {total} weights differ by more than 1e-6"


@pytest.fixture
def zero3_partitions_everything(monkeypatch):
    """ZeRO-3 keeps parameters of up to 1e5 elements whole on every rank, which is all of
    tiny-random's layers; a threshold of 0 partitions every parameter, so every gather runs."""
    import deepspeed

    initialize = deepspeed.initialize

    def partitioning(*args, config, **kwargs):
        if config["zero_optimization"]["stage"] == 3:
            zero = {**config["zero_optimization"], "stage3_param_persistence_threshold": 0}
            config = {**config, "zero_optimization": zero}
        return initialize(*args, config=config, **kwargs)

    monkeypatch.setattr(deepspeed, "initialize", partitioning)


def _trained(tiny, *overrides: str) -> Learner:
    """A learner (LoRA adapters drawn from seed 0) after two updates on `batch()`."""
    torch.manual_seed(0)
    learner = Learner(spec(tiny, "learner.bf16=false", *overrides))
    learner.update(batch())
    learner.update(batch())
    return learner


@pytest.mark.parametrize("lora", ["learner.lora_rank=0", "learner.lora_rank=4"])
def test_zero3_streams_and_saves_the_same_weights_as_zero0(
    tiny, tmp_path, lora, zero3_partitions_everything
):
    from transformers import AutoModelForCausalLM

    zero3 = _trained(tiny, "learner.zero_stage=3", lora)
    assert all(p.numel() == 0 for p in zero3.model.parameters())  # all partitioned away
    zero0 = dict(_trained(tiny, "learner.zero_stage=0", lora).named_weights())
    streamed = dict(zero3.named_weights())
    assert_same_training(streamed, zero0, lr=1e-2)  # LoRA merged, under the plain HF names
    zero3.save(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path)).state_dict()
    assert all(torch.equal(loaded[name], t) for name, t in streamed.items())
    assert (tmp_path / "adapter").is_dir() == (lora == "learner.lora_rank=4")


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_resumes_from_its_checkpoint_exactly(
    tiny, tmp_path, stage, zero3_partitions_everything
):
    # a ZeRO optimizer's state holds a loss-scaler object (weights-only loading refuses it) and
    # its loader takes a list by rank: save -> load_optimizer must still give the same next step
    learner = _trained(tiny, f"learner.zero_stage={stage}")
    learner.save(tmp_path)
    rng = learner.rng_state()
    learner.update(batch())
    resumed = Learner(
        dataclasses.replace(
            spec(tiny, "learner.bf16=false", f"learner.zero_stage={stage}"),
            model_path=str(tmp_path),
        )
    )
    resumed.load_optimizer(tmp_path)
    resumed.set_rng_state(rng)
    resumed.update(batch())
    expected = dict(learner.named_weights())
    assert all(torch.equal(t, expected[name]) for name, t in resumed.named_weights())


def test_truncated_importance_sampling_weights_tokens_by_learner_over_behaviour(tiny):
    """learner.tis_cap (oat's tis_c): behaviour log-probs equal to the learner's give weight 1;
    behaviour far below them gives exp(gap) capped at tis_cap, on every token."""
    learner = Learner(spec(tiny, "learner.tis_cap=2.0", "learner.bf16=false"))
    prompts, responses = [[1, 2, 3]] * 4, [[4, 5]] * 4
    mine = learner.logprobs(prompts, responses)[0]
    matched = TrainBatch(
        tuple(
            Sample((1, 2, 3), (4, 5), tuple(mine), adv, "kuhn", 0, 0)
            for adv in (1.0, -1.0, 0.5, 2.0)
        ),
        step=0,
    )
    metrics = learner.update(matched)
    # epoch 1 meets the weights it started from; weights moved by the first minibatch only
    # change the ratio, never the TIS weights (computed once, before the update)
    assert metrics["train/tis_weight"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["train/tis_capped_fraction"] == 0.0
    low = TrainBatch(
        tuple(dataclasses.replace(s, logprobs=(-40.0, -40.0)) for s in batch().samples), 0
    )
    far = learner.update(low)  # behaviour -40: exp(learner - behaviour) >> 2 on every token
    assert far["train/tis_weight"] == pytest.approx(2.0)
    assert far["train/tis_capped_fraction"] == 1.0
    assert "train/tis_weight" not in Learner(spec(tiny)).update(batch())  # off by default


def test_lagging_batch_is_clipped_to_nothing_without_tis_and_learned_from_with_it(tiny):
    """One step off-policy, the behaviour log-probs trail the learner's by a whole update. Here
    every token's ratio to them is e (outside the 0.8-1.2 trust region): plain PPO clips every
    token of a positive-advantage batch, so the update changes nothing; with the decoupled
    objective (learner.tis_cap, the default at train.max_staleness > 0) the clip is centred on
    the learner's own weights and the same batch moves them, each token weighted min(e, 2)."""

    def lagging(learner: Learner) -> TrainBatch:
        mine = learner.logprobs([[1, 2, 3]], [[4, 5]])[0]
        behind = tuple(lp - 1.0 for lp in mine)
        return TrainBatch(
            tuple(Sample((1, 2, 3), (4, 5), behind, adv, "kuhn", 0, 0) for adv in (1, 2, 1, 2)),
            step=1,
        )

    # the cap k > 0 resolves to, given directly: a spec with train.max_staleness=1 would pin
    # this (pytest's) process to the learner's core, and every later subprocess with it
    for overrides, moves in (((), False), ((f"learner.tis_cap={ASYNC_TIS_CAP}",), True)):
        learner = Learner(spec(tiny, "learner.bf16=false", *overrides))
        before = {k: v.clone() for k, v in learner.model.state_dict().items()}
        metrics = learner.update(lagging(learner))
        changed = any(not torch.equal(v, before[k]) for k, v in learner.model.state_dict().items())
        assert changed is moves
        if moves:
            assert metrics["train/tis_weight"] == pytest.approx(2.0)
            assert metrics["train/clip_fraction"] < 1.0
        else:
            assert metrics["train/clip_fraction"] == 1.0


def test_a_masked_choice_is_trained_on_its_probability_among_the_choices(tiny):
    """A choice sample's behaviour log-prob is among its choices only, at the rollout
    temperature; the learner takes the same (a first-step ratio of 1, approx KL 0: over the
    whole vocabulary, or at another temperature, it would be off) and a positive advantage
    moves mass toward the chosen action, among the choices."""
    from spiral_games.logprobs import response_logprobs

    fp32, hot = "learner.bf16=false", "rollout.temperature=2.0"
    learner = Learner(spec(tiny, "learner.batch_size=2", "learner.minibatch_size=2", fp32, hot))
    assert learner.spec.choice_temperature == 2.0  # the rollout's: the policy that played
    prompt, choices = (1, 2, 3, 9, 17), (4350, 7177)  # "call", "fold"

    def masked(token: int) -> float:
        pad = learner.pad_id
        return response_logprobs(learner.model, [prompt], [(token,)], pad, [choices], 2.0)[0][0]

    before = masked(4350)
    samples = tuple(
        Sample(prompt, (4350,), (before,), 1.0, "kuhn", 0, 0, choices) for _ in range(2)
    )
    metrics = learner.update(TrainBatch(samples, step=0))
    assert abs(metrics["train/approx_kl"]) < 1e-6
    assert masked(4350) > before
    assert math.exp(masked(4350)) + math.exp(masked(7177)) == pytest.approx(1.0)


def test_choices_made_at_one_prompt_share_a_forward_pass_with_the_same_log_probs(tiny):
    """`shared_choice_logprobs` (one forward per distinct prompt) gives each masked choice the
    log-prob, and the gradient, that the per-sample path (`token_logprobs`) gives it."""
    from spiral_games.logprobs import pack_sequences, shared_choice_logprobs, token_logprobs

    learner = Learner(spec(tiny, "learner.bf16=false"))
    model, pad = learner.model, learner.pad_id
    prompts = [(1, 2, 3, 9, 17), (5, 6, 7, 8, 9, 10, 11)]  # two lengths: the padding is tested
    choices = [(4350, 7177), (30, 31, 32)]
    picks = [(0, 4350), (1, 32), (0, 7177), (0, 4350), (1, 30)]
    shared = shared_choice_logprobs(model, prompts, choices, picks, pad, 2.0)
    (grad_shared,) = torch.autograd.grad(shared.sum(), [model.lm_head.weight])
    rows = [(prompts[r], (t,), choices[r]) for r, t in picks]
    ids, attention, mask = pack_sequences([p for p, _, _ in rows], [t for _, t, _ in rows], pad)
    full = token_logprobs(model, ids, attention, mask, [c for _, _, c in rows], 2.0)
    each = full[mask.bool()]
    (grad_each,) = torch.autograd.grad(each.sum(), [model.lm_head.weight])
    assert shared.tolist() == pytest.approx(each.tolist(), abs=1e-5)
    assert torch.allclose(grad_shared, grad_each, atol=1e-5)
    assert shared[0] == shared[3]  # the same choice at the same prompt: one value


def test_an_update_is_the_same_whether_choices_share_forward_passes_or_not(tiny):
    """Micro-batches of one sample each (no sharing) and of four rows (the duplicates share one)
    train to the same weights: the grouping changes the work, not the update."""
    prompt, other, choices = (1, 2, 3, 9, 17), (5, 6, 7, 8), (4350, 7177)
    samples = tuple(
        Sample(p, (t,), (math.log(0.5),), adv, "kuhn", 0, 0, choices)
        for p, t, adv in [
            (prompt, 4350, 1.0),
            (prompt, 7177, -0.5),
            (other, 4350, 0.25),
            (prompt, 4350, 1.0),
        ]
    )
    weights = []
    for micro in ("1", "4"):
        learner = Learner(
            spec(
                tiny,
                "learner.bf16=false",
                "learner.minibatch_size=4",
                f"learner.micro_batch_size={micro}",
            )
        )
        learner.update(TrainBatch(samples, step=0))
        weights.append(learner.model.lm_head.weight.detach().clone())
        learner.shutdown()
    # Adam's first step moves each weight by about lr (1e-2) whatever its gradient's size, so a
    # summation-order difference in a near-zero gradient shows up; measured at most 5e-6
    assert torch.allclose(weights[0], weights[1], atol=1e-4)
    assert not torch.equal(weights[0], Learner(spec(tiny)).model.lm_head.weight)


def test_the_sft_loss_is_the_nll_of_the_reply_tokens_and_an_update_lowers_it(tiny):
    """learner.loss=sft: the loss of a micro-batch is its replies' mean NLL per token, computed
    here independently from the model's logits (a free-text reply over the whole vocabulary, a
    masked choice among its choices at the rollout temperature), and an update lowers it."""
    fp32, sft = "learner.bf16=false", "learner.loss=sft"
    learner = Learner(
        spec(
            tiny,
            fp32,
            sft,
            "learner.magnet_coef=0",  # conf/sft.yaml's: the NLL alone
            "learner.batch_size=2",
            "learner.minibatch_size=2",
            "learner.micro_batch_size=2",
        )
    )
    free = [
        Sample((1, 2, 3), (4, 5, 2), (0.0,) * 3, 1.0, "kuhn", 0, 0),
        Sample((6, 7), (8,), (0.0,), 1.0, "kuhn", 1, 0),
    ]
    choices = (4350, 7177)
    chosen = [Sample((1, 2, 3, 9), (7177,), (0.0,), 1.0, "kuhn", 0, 0, choices)] * 2

    def nll(sample: Sample) -> list[float]:
        ids = torch.tensor([sample.prompt_ids + sample.response_ids])
        with torch.no_grad():
            logits = learner.model(input_ids=ids).logits[0].float()
        start = len(sample.prompt_ids) - 1
        out = []
        for k, token in enumerate(sample.response_ids):
            row = logits[start + k]
            if sample.choice_ids:  # among the choices, at the rollout temperature
                row = row[list(sample.choice_ids)] / learner.spec.choice_temperature
                token = sample.choice_ids.index(token)
            out.append(-float(torch.log_softmax(row, -1)[token]))
        return out

    expected_free = sum(nll(free[0]) + nll(free[1])) / 4  # four reply tokens in all
    expected_choice = nll(chosen[0])[0]
    assert learner.spec.choice_temperature == 2.0  # conf/rollout/cpu.yaml's: not 1, so tested
    out, _ = learner._loss(free)
    assert out.loss.item() == pytest.approx(expected_free, rel=1e-5)
    out, _ = learner._loss(chosen)  # the shared forward pass of masked choices
    assert out.loss.item() == pytest.approx(expected_choice, rel=1e-5)
    metrics = learner.update(TrainBatch(tuple(free), step=0))
    assert metrics["train/loss"] == pytest.approx(expected_free, rel=1e-5)
    assert learner._loss(free)[0].loss.item() < expected_free
