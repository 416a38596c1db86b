"""The opponents as the loop sees them: the workers' own need nothing from the driver; a
league writes a snapshot when one is due (timed as checkpoint, never after the last step),
sends it once, resumes with its snapshots sent, and prunes files no checkpoint names."""

from __future__ import annotations

from pathlib import Path

from spiral_games.config.schema import LeagueConfig
from spiral_games.play.league import member_name
from spiral_games.run.metrics import PhaseClock
from spiral_games.run.opponents import LeagueOpponents, WorkerOpponents
from spiral_games.types import Episode


class SnapshotPool:
    """Records what the league sends to the workers."""

    def __init__(self) -> None:
        self.sent: list[dict[str, tuple[str, int]]] = []

    def set_league(self, snapshots: dict[str, tuple[str, int]]) -> None:
        self.sent.append(dict(snapshots))


class Exporter:
    """The one learner method a league calls: write the current weights to `path`."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def export_weights(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")
        self.paths.append(path)
        return path


def test_the_workers_own_opponents_need_nothing_from_the_driver():
    opponents, clock = WorkerOpponents(), PhaseClock()
    opponents.record([Episode("kuhn", 0, (), (1.0, -1.0), "end", opponent="random")])
    opponents.join(2, learner=None, clock=clock)
    opponents.send()
    opponents.checkpointed()
    assert opponents.draw() is None and opponents.state_dict() is None
    assert opponents.metrics() == {}
    assert clock.seconds["checkpoint"] == 0.0  # no phase time for what did not happen


def test_a_league_snapshot_is_written_when_due_sent_once_and_never_after_the_last_step(tmp_path):
    pool, learner = SnapshotPool(), Exporter()
    cfg = LeagueConfig(every=2, size=2, fixed=["random"])
    league = LeagueOpponents.resume(cfg, None, tmp_path, pool, steps=4)
    assert pool.sent == []  # a new league: nothing to send yet
    for done in (1, 2, 3, 4):
        clock = PhaseClock()
        league.join(done, learner, clock)
        league.send()
        assert (clock.seconds["checkpoint"] > 0) == (done == 2)
    path = tmp_path.resolve() / "league" / "step_000002.safetensors"
    assert learner.paths == [path]  # step 4 is due but last: no later step would play it
    assert pool.sent == [{member_name(2): (str(path), 2)}]  # once, with that step's push
    assert league.draw().members == ("random", member_name(2))
    state = league.state_dict()
    assert state is not None and [m[0] for m in state["members"]] == ["random", member_name(2)]

    resumed_pool = SnapshotPool()
    LeagueOpponents.resume(cfg, state, tmp_path, resumed_pool, steps=4)
    assert resumed_pool.sent == pool.sent  # the workers get the checkpoint's snapshots first

    league.checkpointed()  # no kept checkpoint names step_000002 here: its file goes
    assert not path.exists()
