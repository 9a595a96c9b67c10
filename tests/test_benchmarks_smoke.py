"""Smoke test: every benchmark script runs with --quick and prints its markdown table."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("script,header", [
    ("bench_iteration.py", "| solver | SFO/iter | HVP/iter |"),
    ("bench_memory.py", "| solver | peak RSS (MB) |"),
    ("bench_seeds.py", "| solver | 1 seed: seeds/s |"),
])
def test_benchmark_quick(script, header):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), "--quick"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert header in out.stdout
    rows = [l for l in out.stdout.splitlines() if l.startswith("| ") and "---" not in l]
    assert len(rows) >= 2  # header + at least one measured row
