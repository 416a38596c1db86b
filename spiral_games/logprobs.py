"""Teacher-forced log-probabilities of response tokens under a causal LM (pure torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def pack_sequences(
    prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded `input_ids` [B, L], `attention_mask` [B, L] and `response_mask` [B, L-1].

    `response_mask[b, t]` is 1 where token t+1 of row b is a response token, i.e. where the
    logits at position t predict a response token.
    """
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses, strict=True)]
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response = torch.zeros((len(lengths), width - 1), dtype=torch.float32)
    for row, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        ids[row, : len(p) + len(r)] = torch.tensor([*p, *r], dtype=torch.long)
        attention[row, : len(p) + len(r)] = 1
        response[row, len(p) - 1 : len(p) + len(r) - 1] = 1.0
    return ids, attention, response


def token_logprobs(
    model: torch.nn.Module,
    ids: torch.Tensor,
    attention: torch.Tensor,
    response_mask: torch.Tensor | None = None,
    choices: Sequence[Sequence[int]] | None = None,
    choice_temperature: float = 1.0,
) -> torch.Tensor:
    """Log-prob [B, L-1] of each next token `ids[:, 1:]` given its prefix.

    With `response_mask` [B, L-1], the LM head and log-softmax run only from the first position
    any row predicts a response token (`logits_to_keep`); earlier positions come back as 0.
    Prompts are most of a game turn's tokens, and the head (vocab 49k for SmolLM2) is about a
    fifth of the model's FLOPs, so this saves about that much of the forward and backward.

    `choices` [B] (with `response_mask`): for a row with choices, a masked choice, its one
    response token's log-prob is taken among those tokens only, at `choice_temperature` (the
    distribution the engine drew it from: `spiral_games.llm.choice.choice_logprobs`).
    """
    return token_logprobs_and_magnet(
        model, ids, attention, response_mask, choices, choice_temperature
    )[0]


def token_logprobs_and_magnet(
    model: torch.nn.Module,
    ids: torch.Tensor,
    attention: torch.Tensor,
    response_mask: torch.Tensor | None = None,
    choices: Sequence[Sequence[int]] | None = None,
    choice_temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`token_logprobs`, and [B, L-1] the exact KL of each masked choice's distribution to the
    uniform one over its options (`kl_to_uniform`) at the choice's position, 0 elsewhere."""
    width = ids.shape[1] - 1
    first = 0
    if response_mask is not None and bool(response_mask.any()):
        first = int(response_mask.any(dim=0).nonzero()[0])
    keep = torch.arange(first, width, device=ids.device)
    logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=keep).logits.float()
    lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, first + 1 :].unsqueeze(-1))
    lp = lp.squeeze(-1)
    magnet = torch.zeros_like(lp)
    if choices is not None and any(choices):
        assert response_mask is not None, "choices need the response mask"
        rows, cols, values, kls = [], [], [], []
        for row, options in enumerate(choices):
            if options:
                col = int(response_mask[row].nonzero()[0]) - first
                table = torch.log_softmax(logits[row, col, list(options)] / choice_temperature, -1)
                values.append(table[list(options).index(int(ids[row, first + col + 1]))])
                kls.append(kl_to_uniform(table))
                rows.append(row)
                cols.append(col)
        index = (torch.tensor(rows, device=lp.device), torch.tensor(cols, device=lp.device))
        lp = lp.index_put(index, torch.stack(values).to(lp.dtype))
        magnet = magnet.index_put(index, torch.stack(kls).to(lp.dtype))
    pad = (first, 0)
    return torch.nn.functional.pad(lp, pad), torch.nn.functional.pad(magnet, pad)


def kl_to_uniform(logprobs: torch.Tensor) -> torch.Tensor:
    """KL(p || uniform) = log n - H(p) of one distribution given as log-probs [n]: the
    regulariser of magnetic mirror descent with a uniform magnet (Sokota et al. 2023, Eq. 3)."""
    n = logprobs.shape[-1]
    return (logprobs.exp() * logprobs).sum(-1) + math.log(n)


def shared_choice_logprobs(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    choices: Sequence[Sequence[int]],
    picks: Sequence[tuple[int, int]],
    pad_id: int,
    choice_temperature: float = 1.0,
) -> torch.Tensor:
    """Log-probs [N] of N masked choices made at fewer distinct prompts, one forward pass per
    prompt: `picks[n]` = (which of `prompts` choice n was made at, the token it chose among
    that prompt's `choices`), each at `choice_temperature`, as `token_logprobs` takes it.
    Several games reach the same position (Kuhn has 12 information sets), so this spares the
    learner most of its forward and backward work there, with the same gradient."""
    return shared_choice_logprobs_and_magnet(
        model, prompts, choices, picks, pad_id, choice_temperature
    )[0]


def shared_choice_logprobs_and_magnet(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    choices: Sequence[Sequence[int]],
    picks: Sequence[tuple[int, int]],
    pad_id: int,
    choice_temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`shared_choice_logprobs`, and [N] each choice's exact KL to the uniform distribution over
    its options (`kl_to_uniform`)."""
    device = next(model.parameters()).device
    lengths = [len(p) for p in prompts]
    width = max(lengths)
    ids, attention, _ = pack_sequences(prompts, [() for _ in prompts], pad_id)
    first = min(lengths) - 1  # the head runs from the first position any row decides at
    keep = torch.arange(first, width, device=device)
    logits = model(
        input_ids=ids.to(device), attention_mask=attention.to(device), logits_to_keep=keep
    ).logits.float()
    table = [
        torch.log_softmax(logits[row, n - 1 - first, list(options)] / choice_temperature, -1)
        for row, (n, options) in enumerate(zip(lengths, choices, strict=True))
    ]
    kls = [kl_to_uniform(t) for t in table]
    return (
        torch.stack([table[row][list(choices[row]).index(token)] for row, token in picks]),
        torch.stack([kls[row] for row, _ in picks]),
    )


def response_logprobs(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    pad_id: int,
    choices: Sequence[Sequence[int]] | None = None,
    choice_temperature: float = 1.0,
) -> list[list[float]]:
    """Per-token log-probs of each response given its prompt (no gradient); `choices` and
    `choice_temperature` as in `token_logprobs`."""
    device = next(model.parameters()).device
    ids, attention, mask = pack_sequences(prompts, responses, pad_id)
    with torch.no_grad():
        lp = token_logprobs(
            model,
            ids.to(device),
            attention.to(device),
            mask.to(device),
            choices,
            choice_temperature,
        ).cpu()
    return [lp[row][mask[row].bool()].tolist() for row in range(len(prompts))]


def response_scores(
    model: torch.nn.Module, prompt: Sequence[int], response: Sequence[int]
) -> tuple[list[float], list[float]]:
    """For one response: each token's log-prob given its prefix, and the largest log-prob any
    token has at that position (equal when the response token is the model's argmax). Run in
    the caller's precision context (e.g. the learner's autocast); no gradient."""
    device = next(model.parameters()).device
    ids = torch.tensor([[*prompt, *response]], dtype=torch.long, device=device)
    keep = torch.arange(len(prompt) - 1, ids.shape[1] - 1, device=device)
    with torch.no_grad():
        logits = model(input_ids=ids, logits_to_keep=keep).logits.float()
    lp = torch.log_softmax(logits[0], dim=-1).cpu()
    chosen = lp.gather(-1, torch.tensor(list(response)).unsqueeze(-1)).squeeze(-1)
    return chosen.tolist(), lp.max(dim=-1).values.tolist()
