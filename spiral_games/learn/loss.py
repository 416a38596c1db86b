"""The learner's loss: PPO-clip or REINFORCE with Dr.GRPO's constant normaliser, or the
imitation baseline's NLL; optional KL terms (to a frozen reference; to a uniform magnet at
masked choices).

Pure torch. A policy-gradient loss sums over response tokens and divides by (sequences x
`normalizer`), the maximum generation length (Dr.GRPO, Liu et al. 2025, as SPIRAL uses), so long
and short responses are not re-weighted by their length. The `sft` loss is the mean negative
log-likelihood per response token (teacher forcing), whatever the advantages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spiral_games.config.choices import PolicyLoss


@dataclass(frozen=True)
class LossOutput:
    loss: torch.Tensor  # scalar
    clip_fraction: float  # share of response tokens where the PPO clip was active
    approx_kl: float  # mean (old - new) log-prob over response tokens
    kl_to_ref: float  # mean k3 KL to the reference (0 without one)
    kl_to_magnet: float = 0.0  # mean exact KL to the magnet per decision (0 without one)


def policy_loss(
    logprobs: torch.Tensor,  # [B, T] current policy log-probs of the response tokens
    old_logprobs: torch.Tensor,  # [B, T] behaviour log-probs
    advantages: torch.Tensor,  # [B]
    mask: torch.Tensor,  # [B, T] 1 on response tokens
    normalizer: float,
    mode: PolicyLoss,
    clip: float,
    ref_logprobs: torch.Tensor | None = None,  # [B, T] frozen reference, for the KL term
    kl_coef: float = 0.0,  # the KL term's weight; 0 (or no `ref_logprobs`): none
    token_weights: torch.Tensor | None = None,  # [B, T] e.g. truncated importance weights
    magnet_kl: torch.Tensor | None = None,  # [B, T] exact KL to the magnet where a choice is made
    magnet_coef: float = 0.0,  # its weight (magnetic mirror descent); 0 (or no `magnet_kl`): none
) -> LossOutput:
    """SPIRAL's objective (Eq. 6): clipped surrogate with per-sample advantages; or, with
    `mode=sft`, the mean NLL per response token (`advantages`, `old_logprobs`, `clip` and
    `normalizer` unused).

    With `token_weights` (truncated importance sampling, as oat's `tis_c`), `old_logprobs` are
    the learner's own log-probs before the update and each token's policy-gradient term is
    scaled by its weight, min(exp(learner - behaviour), cap), which carries no gradient.
    """
    mask = mask.to(logprobs.dtype)
    adv = advantages.to(logprobs.dtype).unsqueeze(-1)
    if mode == PolicyLoss.ppo:
        ratio = torch.exp(logprobs - old_logprobs)
        unclipped = -adv * ratio
        clipped = -adv * torch.clamp(ratio, 1 - clip, 1 + clip)
        per_token = torch.maximum(unclipped, clipped)
        clip_active = (clipped > unclipped).to(mask.dtype)
    elif mode == PolicyLoss.reinforce:
        per_token = -adv * logprobs
        clip_active = torch.zeros_like(mask)
    elif mode == PolicyLoss.sft:
        per_token = -logprobs
        clip_active = torch.zeros_like(mask)
    else:
        raise ValueError(f"Unknown loss mode '{mode}': use 'ppo', 'reinforce' or 'sft'.")
    if token_weights is not None:
        per_token = per_token * token_weights.detach().to(per_token.dtype)
    kl = torch.zeros_like(per_token)
    if ref_logprobs is not None and kl_coef:
        log_ratio = ref_logprobs - logprobs
        kl = torch.exp(log_ratio) - log_ratio - 1  # k3 estimator, non-negative
        per_token = per_token + kl_coef * kl
    magnet = torch.zeros_like(per_token)
    if magnet_kl is not None and magnet_coef:
        magnet = magnet_kl.to(per_token.dtype)
        per_token = per_token + magnet_coef * magnet
    tokens = mask.sum().clamp(min=1)
    denom = tokens if mode == PolicyLoss.sft else logprobs.shape[0] * normalizer
    return LossOutput(
        loss=(per_token * mask).sum() / denom,
        clip_fraction=float((clip_active * mask).sum() / tokens),
        approx_kl=float(((old_logprobs - logprobs).detach() * mask).sum() / tokens),
        kl_to_ref=float((kl.detach() * mask).sum() / tokens),
        kl_to_magnet=float((magnet.detach() * mask).sum() / tokens),
    )
