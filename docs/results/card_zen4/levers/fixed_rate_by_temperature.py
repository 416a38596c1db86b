"""TicTacToe's fixed-position optimal-move rate of models at choice temperatures 2, 1 and 0.5,
and of their most likely move (argmax): is the trained ranking right and only flattened by the
temperature, or not learned?

    .venv/bin/python docs/results/card_zen4/levers/fixed_rate_by_temperature.py \
        smollm2-135m runs/<run>/checkpoints/step_000010
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]


def main(models: list[str]) -> None:
    sys.path.insert(0, str(REPO))
    from games.tictactoe import best_moves, fixed_positions, session_at
    from spiral_games.config.compose import compose_run_config
    from spiral_games.config.schema import RolloutConfig
    from spiral_games.llm.engines.base import EngineSpec
    from spiral_games.llm.engines.hf import HFEngine
    from spiral_games.llm.models import resolve_model
    from spiral_games.llm.policy import LLMPolicy
    from spiral_games.play.registry import build_rules
    from spiral_games.types import SamplingParams

    cfg = compose_run_config(REPO / "conf", ["+games=[tictactoe]"])
    rules = build_rules("tictactoe", cfg.games["tictactoe"])
    positions = fixed_positions(64)
    asked = [session_at(rules, p.moves).pending() for p in positions]
    best = [best_moves(p.cells, p.mark) for p in positions]
    for name in models:
        model = resolve_model(name)
        spec = EngineSpec.from_rollout("hf", model.path, RolloutConfig(), dtype="float32", seed=0)
        engine = HFEngine(spec)
        row = {}
        for temperature in (2.0, 1.0, 0.5):
            policy = LLMPolicy(
                engine,
                model.tokenizer,
                SamplingParams(temperature=temperature, top_p=1.0, max_tokens=8),
                {},
                2048,
                on_context_overflow="draw",
                default_style="short",
                choice_games=("tictactoe",),
            )
            stated = policy.action_probabilities(asked)
            mass = [
                sum(p for a, p in probs.items() if int(a.strip("[]")) in good)
                for probs, good in zip(stated, best, strict=True)
            ]
            top = [
                int(max(probs, key=probs.get).strip("[]")) in good
                for probs, good in zip(stated, best, strict=True)
            ]
            row[temperature] = f"p={sum(mass) / 64:.3f} argmax={sum(top) / 64:.3f}"
        print(name, row, flush=True)
        engine.close()


if __name__ == "__main__":
    main(sys.argv[1:])
