"""How many student epochs does the default study need? Validation accuracy per method and budget.

Short budgets under-train soft-target methods more than plain CE, so the default budget is fixed
where the ranking between methods stops moving. Uses the default study config (conf/base) and
selects on validation only. Run: .venv/bin/python benchmarks/training_budget.py --epochs 10 20 40
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.models import build_model
from distillation_studies.learning.training import train

from _study import default_study  # benchmarks/_study.py, beside this script



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 20, 40])
    args = parser.parse_args()
    study, data = default_study()

    torch.manual_seed(study.teacher.seed)
    teacher = build_model(study.teacher.spec)
    ce = build_method("ce", parse_method_config("ce", {}, "t"), teacher, None, 1)
    teacher.load_state_dict(train(teacher, ce, data["train"], data["val"], study.teacher.training, study.teacher.seed).best_state)

    print(f"{'epochs':>6} {'method':>8} {'val acc mean':>12} {'std':>6} {'s/run':>6}")
    for epochs in args.epochs:
        config = study.student.training.__class__(**{**vars(study.student.training), "epochs": epochs})
        for entry in study.methods:
            accuracies, seconds = [], []
            for seed in study.seeds:
                torch.manual_seed(seed)
                student = build_model(study.student.spec)
                method = build_method(entry.method, entry.config, student, teacher, len(data["train"]["y"]))
                started = time.perf_counter()
                result = train(student, method, data["train"], data["val"], config, seed, teacher=teacher if method.needs_teacher else None)
                seconds.append(time.perf_counter() - started)
                accuracies.append(result.summary["best_val_accuracy"])
            print(
                f"{epochs:>6} {entry.key:>8} {100 * statistics.mean(accuracies):>12.2f} "
                f"{100 * statistics.stdev(accuracies):>6.2f} {statistics.mean(seconds):>6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
