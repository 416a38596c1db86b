"""Per-game code: envs, prompts, action parsers and scripted opponents. One module per game."""
