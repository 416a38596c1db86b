"""The reasoning benchmarks harness (MATH, GPQA, ...): data, grading and scoring."""
