"""How many labelled TicTacToe positions does SmolLM2-135M need, in the card's format, to choose
optimal moves on the 64 fixed positions it never sees?

The cleanest signal there is: every informative position reachable in play (3,191) but the 64
fixed ones, each labelled with the set of all its optimal moves (no tie-break noise: the loss is
-log of the probability mass on that set, the masked choice at temperature 2 as the card plays
it). Plain torch, no RL, no sampling. Every `--every` steps it prints the fixed-position rate
(held out, exact), the same rate on 64 training positions (fit), and the minutes so far.

    .venv/bin/python docs/results/tictactoe_supervised/supervised_curve.py \
        --steps 300 --lr 1e-4 --bf16 --seed 0 --out lr1e-4_seed0.json
    .venv/bin/python docs/results/tictactoe_supervised/supervised_curve.py \
        --plot lr1e-4_seed0.json lr1e-4_seed1.json --out curve.png

Options: --train-layers (the card's 10; 0 = every layer), --batch, --board (grid|lines),
--temperature, --train-count (how many training positions to draw from, to test memorisation).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-layers", type=int, default=10)
    ap.add_argument("--board", default="grid")
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--train-count", type=int, default=0)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (as the card's learner)")
    ap.add_argument("--plot", nargs="+", default=[], help="curve JSONs to draw into --out (png)")
    args = ap.parse_args()
    if args.plot:
        plot(args.plot, args.out)
        return

    sys.path.insert(0, str(REPO))
    import torch

    from games.tictactoe import (
        _reaching_moves,
        best_moves,
        fixed_positions,
        informative_positions,
        session_at,
        to_move,
    )
    from spiral_games.config.compose import compose_run_config
    from spiral_games.config.schema import RolloutConfig
    from spiral_games.learn.learner import freeze_below_top
    from spiral_games.llm.engines.base import EngineSpec
    from spiral_games.llm.engines.hf import HFEngine
    from spiral_games.llm.models import resolve_model
    from spiral_games.llm.policy import LLMPolicy
    from spiral_games.play.registry import build_rules
    from spiral_games.types import SamplingParams

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    cfg = compose_run_config(
        REPO / "conf", ["+games=[tictactoe]", f"+games.tictactoe.env.board={args.board}"]
    )
    rules = build_rules("tictactoe", cfg.games["tictactoe"])
    model = resolve_model("smollm2-135m")
    spec = EngineSpec.from_rollout("hf", model.path, RolloutConfig(), dtype="float32", seed=0)
    engine = HFEngine(spec)
    policy = LLMPolicy(
        engine,
        model.tokenizer,
        SamplingParams(temperature=args.temperature, top_p=1.0, max_tokens=8),
        {},
        2048,
        on_context_overflow="draw",
        default_style="short",
        choice_games=("tictactoe",),
    )
    encoder = policy.encoder

    Example = tuple[list[int], list[int], list[bool]]  # prompt ids, choice tokens, optimal?

    def example(cells: tuple[str, ...], moves: tuple[int, ...]) -> Example:
        obs = session_at(rules, moves).pending()
        choices = encoder.choices(obs)
        ids, _ = encoder.encode(obs, choices)
        good = set(best_moves(cells, to_move(cells)))
        legal = [int(a.strip("[]")) for a in obs.legal_actions or ()]
        return ids, list(choices), [m in good for m in legal]

    fixed = fixed_positions(64)
    held = {p.cells for p in fixed}
    t0 = time.time()
    test = [example(p.cells, p.moves) for p in fixed]
    pool = [c for c in informative_positions() if c not in held]
    rng.shuffle(pool)
    if args.train_count:
        pool = pool[: args.train_count]
    train = [example(c, _reaching_moves(c)) for c in pool]
    fit = train[:64]
    print(f"{len(train)} training positions, 64 held out; encoded in {time.time() - t0:.0f} s")

    net = engine.model
    freeze_below_top(net, args.train_layers)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)

    def good_mass(batch: list, grad: bool) -> torch.Tensor:
        ids, mask = engine._left_padded([prompt for prompt, _, _ in batch])  # as `choose` pads
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)
        with torch.set_grad_enabled(grad), autocast:
            logits = (
                net(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1)
                .logits[:, -1]
                .float()
            )
            logp = logits.log_softmax(-1)
            out = []
            for r, (_, choices, good) in enumerate(batch):
                lp = (logp[r, choices] / args.temperature).log_softmax(-1)
                out.append(torch.logsumexp(lp[torch.tensor(good)], 0))
            return torch.stack(out)  # log of the mass on the optimal moves

    def rate(batch: list) -> float:
        net.eval()
        return float(good_mass(batch, False).exp().mean())

    curve = []
    order: list[int] = []
    t0 = time.time()
    for step in range(args.steps + 1):
        if step % args.every == 0:
            row = {
                "step": step,
                "seen": step * args.batch,
                "fixed": round(rate(test), 4),
                "fit": round(rate(fit), 4),
                "minutes": round((time.time() - t0) / 60, 2),
            }
            curve.append(row)
            print(json.dumps(row), flush=True)
        if step == args.steps:
            break
        if len(order) < args.batch:
            order += rng.sample(range(len(train)), len(train))
        batch = [train[i] for i in order[: args.batch]]
        del order[: args.batch]
        net.train()
        loss = -good_mass(batch, True).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "curve": curve}, indent=1))


def plot(curves: list[str], out: str) -> None:
    """The fixed-position rate (held out) and the fit of each curve JSON, against labels seen,
    with the random player's 0.411 and the card's 0.55 target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for path in curves:
        data = json.loads(Path(path).read_text())
        seen = [r["seen"] for r in data["curve"]]
        name = f"seed {data['args']['seed']}"
        (line,) = ax.plot(
            seen, [r["fixed"] for r in data["curve"]], label=f"{name}: fixed (held out)"
        )
        ax.plot(
            seen,
            [r["fit"] for r in data["curve"]],
            ":",
            color=line.get_color(),
            label=f"{name}: fit",
        )
    ax.axhline(0.411, color="gray", ls="--", label="uniform random player")
    ax.axhline(0.55, color="black", ls="-.", label="card target")
    ax.set_xlabel("labelled positions seen")
    ax.set_ylabel("probability on optimal moves")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main()
