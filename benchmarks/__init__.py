"""Performance suite: `python -m benchmarks.bench_build` (and more to come)."""
