"""``analysis/metrics.py`` is the one table of reported metrics: one row added there reaches the comparison
table, the report, the plots' axes and the MLflow names."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

from distillation_studies.analysis.metrics import COST_LIMITS, LOG_AXIS_METRICS, METRICS, PARETO_COSTS
from distillation_studies.analysis.recommend import Constraints

# Run in a fresh interpreter: it loads analysis/metrics.py with one row appended (the one edit a new cost
# metric needs), then imports every consumer and prints what each of them sees.
PROBE = r'''
import importlib.util, json, pathlib, sys
import numpy as np, pandas as pd
import distillation_studies, distillation_studies.analysis as analysis

path = pathlib.Path(distillation_studies.__file__).parent / "analysis" / "metrics.py"
anchor = "METRICS: tuple[ReportedMetric, ...] = ("
source = path.read_text()
assert anchor in source
row = 'ReportedMetric("energy_j", False, "energy", 1, "J", 2, kind=COST, in_report=True, pareto=True, log_axis=True),'
spec = importlib.util.spec_from_loader("distillation_studies.analysis.metrics", loader=None, origin=str(path))
metrics = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = analysis.metrics = metrics
exec(compile(source.replace(anchor, anchor + "\n    " + row, 1), str(path), "exec"), metrics.__dict__)

from distillation_studies.analysis.comparison import comparison_table
from distillation_studies.analysis.stats import Statistics
from distillation_studies.pipelines.comparison.nodes import PARETO_COSTS
from distillation_studies.report import plots
from distillation_studies.report.sections import cost_rows
from distillation_studies.tracking.runs import metric_name

rng = np.random.default_rng(0)
runs = pd.DataFrame([
    {"arm": arm, "method": arm, "seed": seed, **{m.name: float(rng.uniform(1, 2)) for m in metrics.METRICS}}
    for arm in ("ce", "kd") for seed in range(3)
])
table, _ = comparison_table(runs, Statistics(baselines=("ce",)))
figure = plots.pareto_plot(table, "energy_j_mean", label_column="arm")
print(json.dumps({
    "table_columns": [c for c in table.columns if c.startswith("energy_j")],
    "report_headers": list(cost_rows(table)[0]),
    "pareto_axes": PARETO_COSTS,
    "log_axes": list(plots.COUNT_COSTS),
    "pareto_x_formatter": type(figure.axes[0].xaxis.get_major_formatter()).__name__,  # counts read 2.41k
    "mlflow_name": metric_name("energy_j"),
}))
'''


def test_one_row_in_the_metrics_table_reaches_every_output():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"},
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["table_columns"] == ["energy_j_mean", "energy_j_std", "energy_j_ci_low", "energy_j_ci_high"]
    assert "energy, J" in seen["report_headers"]
    assert "energy_j_mean" in seen["pareto_axes"] and "energy_j" in seen["log_axes"] and seen["pareto_x_formatter"] == "FuncFormatter"
    assert seen["mlflow_name"] == "cost/energy_j"


def test_the_derived_lists_are_the_table_rows_that_ask_for_them():
    assert PARETO_COSTS == ["training_parameters", "flops", "latency_ms", "train_time_s"]
    assert LOG_AXIS_METRICS == ("parameters", "training_parameters", "flops")
    assert COST_LIMITS == {"max_parameters": "parameters", "max_flops": "flops", "max_latency_ms": "latency_ms",
                           "max_train_time_s": "train_time_s"}
    assert all(METRICS[[m.name for m in METRICS].index(name)].kind == "cost" for name in PARETO_COSTS)


def test_every_constraint_of_the_table_is_a_recommendation_key():
    fields = {f.name for f in dataclasses.fields(Constraints)}
    assert set(COST_LIMITS) <= fields
