"""Prompt building: the model's chat template, or SPIRAL's raw prompt for base models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spiral_games.config.choices import PromptStyle
from spiral_games.errors import ConfigError
from spiral_games.llm.choice import action_name

RAW_PREFIX = "You are playing a two-player zero-sum game. Make valid actions to win."
RAW_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."


def build_prompt_text(
    tokenizer: Any,
    observation: str,
    style: PromptStyle,
    legal: Sequence[str] | None = None,
    choice: bool = False,
) -> str:
    """Render one observation as the text the policy sees.

    Args:
        tokenizer: an HF tokenizer; its chat template is used for `chat` and `short`.
        observation: the game's observation for the acting role.
        style: `chat` (instruct models), `raw` (SPIRAL's base-model prompt, arXiv 2506.24119),
            or `short` (the observation and a one-line instruction, for small models).
        legal: the legal actions, listed by the `short` style when known.
        choice: the reply is a masked choice of one legal action's name (action_format=choice):
            the instruction asks for that name instead of a \\boxed{} answer.
    """
    suffix = RAW_SUFFIX
    if choice:
        names = [action_name(a) for a in legal or ()]
        # names with commas in them ("Bid: 3, 4") are listed apart by semicolons
        sep = "; " if any("," in n for n in names) else ", "
        suffix = f"Reply with one of: {sep.join(names)}."
    user = f"{RAW_PREFIX}\n\n{observation}\n\n{suffix}"
    if style == PromptStyle.raw:
        return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    if style == PromptStyle.short and choice:
        # the observation and the choice, and no default system turn from the template
        # (SmolLM2's adds about 16 tokens): a masked choice needs no instructions beyond it
        return chat_text(tokenizer, f"{observation}\n\n{suffix}", system="", style=style)
    if style == PromptStyle.short:
        choices = f"Choose one of: {', '.join(legal)}. " if legal else ""
        user = f"{observation}\n\n{choices}Reply with \\boxed{{your action}}."
    if style in (PromptStyle.chat, PromptStyle.short):
        return chat_text(tokenizer, user, style=style)
    raise ConfigError(f"Unknown prompt style '{style}'. Choose 'chat', 'raw' or 'short'.")


def chat_text(
    tokenizer: Any, user: str, system: str | None = None, style: PromptStyle = PromptStyle.chat
) -> str:
    """One user turn rendered with the tokenizer's chat template, ready for the reply; with
    `system`, after that system turn instead of the template's default (a template that takes
    no system turn renders the user turn alone)."""
    if not tokenizer.chat_template:
        raise ConfigError(
            f"prompt_style={style} needs a tokenizer with a chat template, and this model has "
            "none. Set games.<name>.prompt_style=raw for base models."
        )
    user_turn = [{"role": "user", "content": user}]
    if system is not None:
        try:
            return tokenizer.apply_chat_template(
                [{"role": "system", "content": system}, *user_turn],
                add_generation_prompt=True,
                tokenize=False,
            )
        except Exception:  # jinja2's TemplateError: "System role not supported" (Gemma)
            pass
    return tokenizer.apply_chat_template(user_turn, add_generation_prompt=True, tokenize=False)


def encode_user_message(tokenizer: Any, user: str) -> list[int]:
    """Token ids of one user turn: through the chat template when the model has one."""
    if tokenizer.chat_template:
        return list(tokenizer(chat_text(tokenizer, user), add_special_tokens=False)["input_ids"])
    return list(tokenizer(user)["input_ids"])


def encode_prompt(
    tokenizer: Any,
    observation: str,
    style: PromptStyle,
    legal: Sequence[str] | None = None,
    choice: bool = False,
    reply_prefix: str = "",
) -> list[int]:
    """Token ids of `build_prompt_text`, then of `reply_prefix` (the start of the reply, written
    for the model); special tokens come from the template, not re-added."""
    text = build_prompt_text(tokenizer, observation, style, legal, choice) + reply_prefix
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
