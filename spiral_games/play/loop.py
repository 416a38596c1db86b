"""The game loop: one `GameSession` per episode, and a driver that batches every session waiting
on the same policy into one `act` call. Pure: no Ray, vLLM or DeepSpeed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeGuard, cast

from spiral_games.config.choices import ActionFormat, InvalidMove
from spiral_games.config.schema import GameConfig
from spiral_games.errors import GameError
from spiral_games.play.game import GameEnv
from spiral_games.play.parsing import extract_boxed, parse_mentioned_action
from spiral_games.play.policy import Policy, StreamingPolicy
from spiral_games.types import Episode, GameEnd, Observation, ParsedAction, PolicyOutput, Turn


@dataclass(frozen=True)
class GameRules:
    """How one game is played: its env factory and its config (the invalid-move policy, its
    rewards and retries, the turn limit), passed whole. Built by `registry.build_rules`."""

    name: str
    make_env: Callable[[], GameEnv]
    config: GameConfig  # invalid_move, invalid_penalty, retry_allowance, max_turns, ...
    # resolved from the game's or the model's: boxed: SPIRAL's \boxed{}; lenient: else the last
    # named move; choice: a masked choice where the state lists its legal actions, else lenient
    action_format: ActionFormat


@dataclass(frozen=True)
class GameJob:
    """One episode to play: the game, its seed and the policy in each seat."""

    rules: GameRules
    seed: int
    seats: tuple[Policy, Policy]
    trained_roles: tuple[int, ...] = (0, 1)
    version: int = 0
    opponent: str = ""


class GameSession:
    """One episode as a state machine: `pending()` asks for an action, `submit()` applies it."""

    def __init__(self, job: GameJob) -> None:
        self.job = job
        self.env = job.rules.make_env()
        self.env.reset(job.seed)
        self.turns: list[Turn] = []
        self.errors = 0  # consecutive invalid moves of the role to act
        self._text: str | None = None  # observation of the current turn, kept for retries
        self._note = ""
        self._ended: tuple[tuple[float, float], str, int | None, GameEnd] | None = None

    @property
    def finished(self) -> bool:
        return self._ended is not None or self.env.done

    def pending(self) -> Observation | None:
        """The observation the acting role must answer, or None once the game is over."""
        if self.finished:
            return None
        if len(self.turns) >= self.job.rules.config.max_turns:
            self._ended = (
                (0.0, 0.0),
                f"turn limit of {self.job.rules.config.max_turns} reached",
                None,
                GameEnd.TURN_LIMIT,
            )
            return None
        role = self.env.current_role
        if self._text is None:
            self._text = self.env.observation(role)
        legal = self.env.legal_actions(role)
        position = self.env.current_state(role)
        return Observation(
            game=self.job.rules.name,
            role=role,
            text=self._text + self._note,
            legal_actions=tuple(legal) if legal is not None else None,
            state=self.env.policy_state(role),
            position=None if position is None else position + self._note,
            reply_prefix=self.env.reply_prefix(role),
        )

    def submit(self, observation: Observation, output: PolicyOutput) -> None:
        """Parse and apply the acting role's output, enforcing the invalid-move policy."""
        role = observation.role
        if output.context_overflow:
            self._ended = (
                (0.0, 0.0),
                "draw: the game history outgrew the model context",
                None,
                GameEnd.CONTEXT_OVERFLOW,
            )
            return
        legal = observation.legal_actions
        if output.choice_ids and legal and len(output.choice_ids) == len(legal):
            # a masked choice: the token picked names the action at its index (legal's order)
            parsed = ParsedAction(legal[output.choice_ids.index(output.token_ids[0])])
        elif output.action is not None and legal and output.action in legal:
            parsed = ParsedAction(output.action)  # a spelled choice: the name it spelled
        else:
            parsed = self.env.parse_action(output.text, role)
        if (
            parsed.action is None
            and self.job.rules.action_format in (ActionFormat.lenient, ActionFormat.choice)
            and legal
            and extract_boxed(output.text) is None
        ):
            parsed = parse_mentioned_action(output.text, legal)
        reason = parsed.reason
        if parsed.action is not None:
            result = self.env.step(parsed.action)
            reason = "" if result.valid else result.reason
        self.turns.append(
            Turn(
                role=role,
                observation=observation.text,
                response=output.text,
                action=parsed.action,
                valid=not reason,
                invalid_reason=reason,
                prompt_ids=output.prompt_ids,
                response_ids=output.token_ids,
                logprobs=output.logprobs,
                truncated=output.truncated,
                context_truncated=output.context_truncated,
                lenient=parsed.lenient,
                version=output.version,
                choice_ids=output.choice_ids,
            )
        )
        if not reason:
            self.errors, self._text, self._note = 0, None, ""
            return
        self.errors += 1
        game = self.job.rules.config
        if game.invalid_move == InvalidMove.penalty:
            self._end_by_invalid(role, game.invalid_penalty, game.invalid_opponent_reward, reason)
        elif self.errors > game.retry_allowance:
            self._end_by_invalid(role, -1.0, 1.0, reason)
        else:
            self._note = f"\n\nYour previous move was invalid ({reason}). Please try again."

    def _end_by_invalid(self, role: int, mine: float, theirs: float, reason: str) -> None:
        returns = (mine, theirs) if role == 0 else (theirs, mine)
        self._ended = (
            returns,
            f"Player {role} made an invalid move: {reason}",
            role,
            GameEnd.INVALID_MOVE,
        )

    def abandon(self, reason: str) -> Episode:
        """The game so far, stopped by a player who left before the end: no result (returns
        0/0, `GameEnd.ABANDONED`). A game that had already ended is returned as it ended."""
        if not self.finished:
            self._ended = ((0.0, 0.0), reason, None, GameEnd.ABANDONED)
        return self.episode()

    def episode(self) -> Episode:
        """The finished episode; raises if the game is still running."""
        if self._ended is not None:
            returns, reason, invalid_role, end = self._ended
        elif self.env.done:
            returns, reason, invalid_role = self.env.returns(), self.env.outcome_reason, None
            end = GameEnd.FINISHED
        else:
            raise GameError("episode() was called on a game that is still running.")
        return Episode(
            game=self.job.rules.name,
            seed=self.job.seed,
            turns=tuple(self.turns),
            returns=returns,
            reason=reason,
            version=self.job.version,
            invalid_role=invalid_role,
            trained_roles=self.job.trained_roles,
            opponent=self.job.opponent,
            end=end,
        )


class NoSeat:
    """Fills a seat whose moves come by hand (a `replayed` session) or whose policy is put in
    afterwards (reference lines); never asked to act."""

    def act(self, observations: Iterable[Observation]) -> list[PolicyOutput]:
        raise GameError("a replayed session's seats are never asked to act")


def replayed(rules: GameRules, seed: int, actions: Sequence[str]) -> GameSession:
    """A game of `rules` from `seed`, played through `GameSession` along `actions` (each in the
    game's move syntax, e.g. `[4]`) and waiting for the next move: its `pending()` is the
    observation play shows there, and a reply submitted to it is parsed as play parses it."""
    session = GameSession(GameJob(rules, seed, seats=(NoSeat(), NoSeat())))
    for k, action in enumerate(actions):
        session.submit(
            cast(Observation, session.pending()), PolicyOutput(text=f"\\boxed{{{action}}}")
        )
        if not session.turns[-1].valid:
            raise GameError(
                f"{rules.name}: move {action} was refused after {list(actions[:k])}; were the "
                "moves written for this game?"
            )
    return session


def play_games(jobs: Iterable[GameJob], concurrency: int | None = None) -> list[Episode]:
    """Play every job to the end and return the episodes in job order.

    At most `concurrency` games run at once (all of them if None); a finished game's slot is
    refilled from `jobs` at once, so the policy keeps seeing full batches. A policy that streams
    (`StreamingPolicy`) gets each observation as soon as its game asks, and each game moves on
    as soon as its own answer is done. Every other policy gets all observations waiting on it in
    one `act` call (a round), answered before any streamed answer is waited for.
    """
    queue = list(jobs)
    limit = len(queue) if concurrency is None else concurrency
    if limit < 1 and queue:
        raise GameError(f"concurrency must be >= 1, got {concurrency}")
    active: dict[int, GameSession] = {}
    asked: dict[int, tuple[StreamingPolicy, Observation, str]] = {}  # game -> streamed request
    results: dict[int, Episode] = {}
    try:
        return _play(queue, limit, active, asked, results)
    except BaseException:  # the engine must not keep requests nobody will collect
        for policy, tickets in _open_tickets(asked).values():
            policy.abort(tickets.keys())
        raise


def _play(
    queue: list[GameJob],
    limit: int,
    active: dict[int, GameSession],
    asked: dict[int, tuple[StreamingPolicy, Observation, str]],
    results: dict[int, Episode],
) -> list[Episode]:
    next_job = 0
    while True:
        while len(active) < limit and next_job < len(queue):
            active[next_job] = GameSession(queue[next_job])
            next_job += 1
        rounds: dict[int, tuple[Policy, list[tuple[GameSession, Observation]]]] = {}
        for index, session in list(active.items()):
            if index in asked:
                continue
            obs = session.pending()
            if obs is None:
                results[index] = session.episode()
                del active[index]
                continue
            policy = session.job.seats[obs.role]
            if _streams(policy):
                asked[index] = (policy, obs, policy.submit(obs))
            else:
                rounds.setdefault(id(policy), (policy, []))[1].append((session, obs))
        if rounds:
            for policy, batch in rounds.values():
                _play_round(policy, batch)
            continue
        if not asked:
            if next_job < len(queue):
                continue
            return [results[i] for i in range(len(queue))]
        _answer_streamed(asked, active)


def _streams(policy: Policy) -> TypeGuard[StreamingPolicy]:
    return bool(getattr(policy, "streaming", False))


def _play_round(policy: Policy, batch: list[tuple[GameSession, Observation]]) -> None:
    outputs = policy.act([obs for _, obs in batch])
    if len(outputs) != len(batch):
        raise GameError(
            f"{type(policy).__name__} returned {len(outputs)} outputs for "
            f"{len(batch)} observations."
        )
    for (session, obs), output in zip(batch, outputs, strict=True):
        session.submit(obs, output)


def _open_tickets(
    asked: dict[int, tuple[StreamingPolicy, Observation, str]],
) -> dict[int, tuple[StreamingPolicy, dict[str, int]]]:
    """The open requests per streaming policy: ticket -> game index."""
    by_policy: dict[int, tuple[StreamingPolicy, dict[str, int]]] = {}
    for index, (policy, _, ticket) in asked.items():
        by_policy.setdefault(id(policy), (policy, {}))[1][ticket] = index
    return by_policy


def _answer_streamed(
    asked: dict[int, tuple[StreamingPolicy, Observation, str]], active: dict[int, GameSession]
) -> None:
    """Wait for the streaming policy with the most open requests to finish at least one, and
    apply every answer it has ready."""
    by_policy = _open_tickets(asked)
    policy, tickets = max(by_policy.values(), key=lambda entry: len(entry[1]))
    answers = policy.poll(tickets.keys())
    if not answers:
        raise GameError(f"{type(policy).__name__}.poll returned no answer for open requests.")
    stray = answers.keys() - tickets.keys()
    if stray:
        raise GameError(f"{type(policy).__name__}.poll answered unknown ticket {min(stray)!r}.")
    for ticket, output in answers.items():
        index = tickets[ticket]
        _, obs, _ = asked.pop(index)
        active[index].submit(obs, output)
