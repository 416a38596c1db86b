"""Simple Negotiation as SPIRAL trained it (a TextArena env), TextArena's 5-resource version,
their action parser and a value-seeking scripted negotiator.

SPIRAL's version: two resources (Wood, Gold), 10 of each per player, private values
P0 {Wood: 5, Gold: 15} and P1 {Wood: 15, Gold: 5}, 10 turns. Each turn a player may talk and
must end with one of `[Offer: 3 Wood -> 2 Gold]`, `[Accept]` or `[Deny]`; the opponent sees the
whole message. The player whose inventory value grew more wins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

import textarena as ta
from textarena.envs.registration import ENV_REGISTRY, register

from spiral_games.play.game import TextArenaGame
from spiral_games.play.parsing import MAX_ACTION_CHARS, extract_boxed
from spiral_games.types import Observation, ParsedAction, PolicyOutput

ENV_ID = "SpiralNegotiation-v0"
DEFAULT_VALUES = {0: {"Wood": 5, "Gold": 15}, 1: {"Wood": 15, "Gold": 5}}
_TOKEN = re.compile(r"\[\s*(accept|deny|offer\s*:?[^\[\]]*)\]", re.IGNORECASE)
_ITEM = re.compile(r"^\s*(\d{1,6})\s+([A-Za-z]+)\s*$")


def _resource(word: str, resources: Sequence[str]) -> str | None:
    singular = word.lower().rstrip("s")
    return next((r for r in resources if r.lower().rstrip("s") == singular), None)


def parse_items(text: str, resources: Sequence[str]) -> dict[str, int] | None:
    """'3 Wood, 1 Gold' -> {'Wood': 3, 'Gold': 1}; None if malformed or a resource is unknown."""
    items: dict[str, int] = {}
    for part in re.split(r",|\band\b", text):
        if not part.strip():
            continue
        match = _ITEM.match(part)
        name = _resource(match.group(2), resources) if match else None
        if match is None or name is None or int(match.group(1)) <= 0:
            return None
        items[name] = items.get(name, 0) + int(match.group(1))
    return items or None


def _format_items(items: dict[str, int]) -> str:
    return ", ".join(f"{qty} {name}" for name, qty in items.items())


def parse_offer(
    body: str, resources: Sequence[str]
) -> tuple[dict[str, int], dict[str, int]] | None:
    """'Offer: 3 Wood -> 2 Gold' -> ({'Wood': 3}, {'Gold': 2}); None if malformed."""
    body = re.sub(r"^\s*offer\s*:?", "", body, flags=re.IGNORECASE)
    parts = re.split(r"->|→", body)
    if len(parts) != 2:
        return None
    give, get = parse_items(parts[0], resources), parse_items(parts[1], resources)
    return (give, get) if give and get else None


def canonical_action(message: str, resources: Sequence[str]) -> str | None:
    """The last action token of `message` in canonical form, or None if there is no valid one."""
    tokens = _TOKEN.findall(message)
    if not tokens:
        return None
    token = tokens[-1].strip()
    if token.lower() in ("accept", "deny"):
        return f"[{token.capitalize()}]"
    offer = parse_offer(token, resources)
    if offer is None:
        return None
    return f"[Offer: {_format_items(offer[0])} -> {_format_items(offer[1])}]"


class SpiralNegotiationEnv(ta.Env):
    """Two-resource negotiation on TextArena's State API (registered as SpiralNegotiation-v0)."""

    def __init__(self, max_turns: int = 10, start_quantity: int = 10) -> None:
        self.max_turns = max_turns
        self.start_quantity = start_quantity
        self.resources = ["Wood", "Gold"]

    def reset(self, num_players: int, seed: int | None = None) -> None:
        self.state = ta.TwoPlayerState(num_players=num_players, seed=seed, max_turns=self.max_turns)
        inventory = {pid: {r: self.start_quantity for r in self.resources} for pid in (0, 1)}
        game_state: dict[str, Any] = {
            "inventory": inventory,
            "values": DEFAULT_VALUES,
            "offer": None,
        }
        game_state["initial_value"] = {pid: self.value(game_state, pid) for pid in (0, 1)}
        self.state.reset(game_state=game_state, player_prompt_function=self._prompt)

    @staticmethod
    def value(game_state: dict[str, Any], pid: int) -> int:
        inv, values = game_state["inventory"][pid], game_state["values"][pid]
        return sum(inv[r] * values[r] for r in inv)

    def _prompt(self, player_id: int, game_state: dict[str, Any]) -> str:
        inv, values = game_state["inventory"][player_id], game_state["values"][player_id]
        holdings = "\n".join(f"  - {r}: {inv[r]} units, worth {values[r]} each" for r in inv)
        return (
            f"You are Player {player_id} in a negotiation game.\n"
            f"Your resources and their value to you (private):\n{holdings}\n"
            "Trade so that your total value grows more than your opponent's.\n"
            "Each turn you may talk, and must end with one action:\n"
            "  - '[Offer: 3 Wood -> 2 Gold]' offers your resources (left) for theirs (right);\n"
            "  - '[Accept]' accepts the opponent's pending offer;\n"
            "  - '[Deny]' rejects it.\n"
            f"The game lasts {self.max_turns} turns in total."
        )

    def step(self, action: str) -> tuple[bool, ta.Info]:
        pid = self.state.current_player_id
        gs = self.state.game_state
        canonical = canonical_action(action, self.resources)
        if canonical is None:
            self.state.set_invalid_move(
                reason="End your message with [Offer: N Res -> M Res], [Accept] or [Deny]."
            )
            return self.state.step()
        problem = self._apply(pid, canonical)
        if problem:
            self.state.set_invalid_move(reason=problem)
            return self.state.step()
        self.state.add_observation(
            from_id=pid, message=action, observation_type=ta.ObservationType.PLAYER_ACTION
        )
        if self.state.turn + 1 >= self.max_turns:  # state.turn counts completed valid turns
            gains = {p: self.value(gs, p) - gs["initial_value"][p] for p in (0, 1)}
            if gains[0] == gains[1]:
                self.state.set_draw(reason=f"Both players gained {gains[0]} in value.")
            else:
                winner = 0 if gains[0] > gains[1] else 1
                self.state.set_winner(
                    player_id=winner,
                    reason=f"Player {winner} gained more value ({gains[winner]} vs "
                    f"{gains[1 - winner]}).",
                )
        return self.state.step()

    def _apply(self, pid: int, canonical: str) -> str:
        """Apply a canonical action; return why it is invalid, or ''."""
        gs = self.state.game_state
        offer = gs["offer"]
        if canonical == "[Accept]":
            if offer is None or offer["from"] == pid:
                return "There is no pending offer from your opponent to accept."
            if not self._has(pid, offer["get"]):
                return "You do not have the resources this offer asks for."
            for r, q in offer["give"].items():
                gs["inventory"][offer["from"]][r] -= q
                gs["inventory"][pid][r] += q
            for r, q in offer["get"].items():
                gs["inventory"][pid][r] -= q
                gs["inventory"][offer["from"]][r] += q
            gs["offer"] = None
            return ""
        if canonical == "[Deny]":
            gs["offer"] = None
            return ""
        give, get = parse_offer(canonical[1:-1], self.resources)  # type: ignore[misc]
        if not self._has(pid, give):
            return "You cannot offer resources you do not have."
        gs["offer"] = {"from": pid, "give": give, "get": get}
        return ""

    def _has(self, pid: int, items: dict[str, int]) -> bool:
        inv = self.state.game_state["inventory"][pid]
        return all(inv.get(r, 0) >= q for r, q in items.items())


if ENV_ID not in ENV_REGISTRY:
    register(id=ENV_ID, entry_point=SpiralNegotiationEnv, default_wrappers=None)


def _spiral_legal(env: SpiralNegotiationEnv, role: int) -> list[str]:
    """A finite sample of legal actions: deny, accept when possible, one-for-one trades."""
    gs = env.state.game_state
    actions = ["[Deny]"]
    offer = gs["offer"]
    if offer and offer["from"] != role and env._has(role, offer["get"]):
        actions.append("[Accept]")
    inv = gs["inventory"][role]
    for give in env.resources:
        for get in env.resources:
            if give != get and inv[give] >= 1:
                actions.append(f"[Offer: 1 {give} -> 1 {get}]")
    return actions


def _spiral_state(env: SpiralNegotiationEnv, role: int) -> dict[str, Any]:
    gs = env.state.game_state
    return {
        "values": gs["values"][role],
        "inventory": dict(gs["inventory"][role]),
        "offer": gs["offer"],
        "role": role,
    }


class NegotiationGame(TextArenaGame):
    """The `negotiation` game: SPIRAL's two-resource negotiation with visible chat."""

    def __init__(self, max_turns: int = 10) -> None:
        super().__init__(
            ENV_ID,
            name="negotiation",
            legal_actions=_spiral_legal,
            policy_state=_spiral_state,
            max_turns=max_turns,
        )

    def parse_action(self, response: str, role: int) -> ParsedAction:
        """The boxed message must end in an action token; the whole message goes to the env."""
        boxed = extract_boxed(response)
        if boxed is None:
            return ParsedAction(None, "no \\boxed{...} answer found")
        message = boxed[:MAX_ACTION_CHARS].strip()
        if canonical_action(message, ["Wood", "Gold"]) is None:
            return ParsedAction(None, "no [Offer: ... -> ...], [Accept] or [Deny] in the answer")
        return ParsedAction(message)


def _ta5_legal(env: Any, role: int) -> list[str]:
    gs = env.state.game_state
    inv = gs["player_resources"][role]
    actions = ["[Deny]"]
    offer = gs["current_offer"]
    if (
        offer
        and offer["from_player"] != role
        and all(inv.get(r, 0) >= q for r, q in offer["requested_resources"].items())
    ):
        actions.append("[Accept]")
    for give in env.resource_names:
        for get in env.resource_names:
            if give != get and inv[give] >= 1:
                actions.append(f"[Offer: 1 {give} -> 1 {get}]")
    return actions


class TextArenaNegotiationGame(TextArenaGame):
    """The `negotiation5` game: TextArena's 5-resource SimpleNegotiation-v0 as shipped."""

    def __init__(self, env_id: str = "SimpleNegotiation-v0") -> None:
        super().__init__(env_id, name="negotiation5", legal_actions=_ta5_legal)

    def parse_action(self, response: str, role: int) -> ParsedAction:
        boxed = extract_boxed(response)
        if boxed is None:
            return ParsedAction(None, "no \\boxed{...} answer found")
        if not _TOKEN.search(boxed[:MAX_ACTION_CHARS]):
            return ParsedAction(None, "no [Offer: ... -> ...], [Accept] or [Deny] in the answer")
        return ParsedAction(boxed[:MAX_ACTION_CHARS].strip())


class NegotiationHeuristicPolicy:
    """A value-seeking negotiator that knows only its own values.

    It accepts an offer that raises its own inventory value while giving away no more units
    than it receives (so, with opposed valuations, the opponent gains less); otherwise it asks
    for 2 of its dearest resource in exchange for 1 of its cheapest.
    """

    def __init__(self, min_gain: int = 1) -> None:  # deterministic: takes no seed
        self.min_gain = min_gain

    def act(self, observations: Sequence[Observation]) -> list[PolicyOutput]:
        return [
            PolicyOutput(text=f"\\boxed{{{self._choose(cast(dict[str, Any], obs.state))}}}")
            for obs in observations
        ]

    def _choose(self, state: dict[str, Any]) -> str:
        values, inv, offer = state["values"], state["inventory"], state["offer"]
        if offer and offer["from"] != state["role"]:
            gain = sum(values[r] * q for r, q in offer["give"].items()) - sum(
                values[r] * q for r, q in offer["get"].items()
            )
            units_in, units_out = sum(offer["give"].values()), sum(offer["get"].values())
            affordable = all(inv[r] >= q for r, q in offer["get"].items())
            if gain >= self.min_gain and units_in >= units_out and affordable:
                return "[Accept]"
        cheap = min(values, key=values.__getitem__)
        dear = max(values, key=values.__getitem__)
        if inv[cheap] >= 1 and cheap != dear:
            return f"I propose a fair swap. [Offer: 1 {cheap} -> 2 {dear}]"
        return "[Deny]"
