"""Playing games: the GameEnv interface, the TextArena adapter, the pure game loop, reply
parsing, scripted policies and the game registry. Never imports Ray, vLLM or DeepSpeed."""
