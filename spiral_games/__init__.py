"""spiral-games: self-play RL on two-player zero-sum text games (SPIRAL, arXiv 2506.24119).

Kept import-light on purpose: heavy dependencies (torch, vLLM, Ray, DeepSpeed) are imported
lazily by the modules that adapt them.
"""

__version__ = "0.1.0"
