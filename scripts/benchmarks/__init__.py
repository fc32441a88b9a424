"""The benchmarks of scripts/bench.py: sizes and timing, the benchmark cases, rule benchmarks, reports."""
