"""Configuration: the typed schema (every default's one home), Hydra composition, and the
run-time choices made from the machine (engine, precision, threads)."""
