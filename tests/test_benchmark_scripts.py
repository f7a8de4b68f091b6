"""The benchmark scripts still run against the code they measure (smoke runs on tiny configs; no timing).

``benchmarks/search_vs_grid.py`` once broke when ``recommend_method`` took a new argument, and the break
showed only at the end of a 40-minute grid."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

def test_search_vs_grid_runs_on_the_tiny_search_and_prints_its_verdict():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "search_vs_grid.py"), "--env", "search_tiny"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("same rank-1 group as the grid: ") and last.endswith("of optimiser steps"), last
