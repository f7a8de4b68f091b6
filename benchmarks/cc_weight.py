"""How large ``cc``'s loss term is next to cross-entropy, in RepDistiller's form and in the paper's form.

RepDistiller's CIFAR-100 CC run (``--distill correlation -a 0 -b 0.02``) weights its ``Correlation``
loss, mean_i sum_d |f_s - f_t|_{i,d} |f_s - f_t|_{i+1,d} on 128-d linear embeddings of the pool
features, by 0.02. The project's ``cc`` implements the paper's term (Taylor-RBF correlation
matrices of L2-normalised embeddings, squared Frobenius difference / b^2), which is much smaller on
the same features. This script measures both on the benchmark's models (resnet32x4 -> resnet8x4,
``pool`` features, batch 64) and prints the weight that gives the paper-form term the size RepDistiller's
term has at 0.02, relative to the same CE:  w = 0.02 * E[RepDistiller term] / E[paper term].

The images are synthetic and CIFAR-shaped, with class structure (a fixed random pattern per class plus
unit noise). The student is freshly initialised, as at the start of distillation; the teacher is
either fresh too (``--teacher-steps 0``) or first trained that many SGD steps on the same kind of
images, so its features separate the classes as a trained teacher's do (the paper-form term grows as
teacher and student correlations differ more; RepDistiller's term mostly follows the feature scale).
Without CIFAR images or trained checkpoints this is an estimate of the order of magnitude, not of
the exact ratio on the benchmark.

Run: python benchmarks/cc_weight.py [--batches 5] [--seed 0] [--teacher-steps 60]
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from distillation_studies.learning.methods.cc import cc_loss
from distillation_studies.learning.models import build_model, make_spec
from distillation_studies.learning.training import forward_with_features

SHAPE, CLASSES, BATCH = (3, 32, 32), 100, 64
REPDISTILLER_WEIGHT, FEAT_DIM = 0.02, 128


def repdistiller_correlation(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """RepDistiller ``distiller_zoo/CC.py`` ``Correlation.forward``, written out."""
    delta = (f_s - f_t).abs()
    return (delta[:-1] * delta[1:]).sum(1).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher-steps", type=int, default=60)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    patterns = torch.randn(CLASSES, *SHAPE)

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, CLASSES, (BATCH,))
        return patterns[labels] + torch.randn(BATCH, *SHAPE), labels

    student = build_model(make_spec({"name": "resnet8x4"}, SHAPE, CLASSES)).train()
    # train mode: BatchNorm normalises with batch statistics, so the pool features have the O(1) scale
    # of a trained network's (an untrained network in eval mode blows its activations up with depth)
    teacher = build_model(make_spec({"name": "resnet32x4"}, SHAPE, CLASSES)).train()
    teacher_accuracy = _train(teacher, draw, args.teacher_steps)
    width_s, width_t = 256, 256
    embed_s, embed_t = nn.Linear(width_s, FEAT_DIM), nn.Linear(width_t, FEAT_DIM)  # RepDistiller LinearEmbed
    embed_paper = nn.Linear(width_s, width_t)  # cc.py's student embedding to the teacher's width
    ratios, ce_values, rep_values, paper_values = [], [], [], []
    with torch.no_grad():
        for _ in range(args.batches):
            images, labels = draw()
            s = forward_with_features(student, images, ["pool"])
            t = forward_with_features(teacher, images, ["pool"])
            f_s, f_t = s.features["pool"].flatten(1), t.features["pool"].flatten(1)
            rep = repdistiller_correlation(embed_s(f_s), embed_t(f_t)).item()
            paper = cc_loss(embed_paper(f_s), f_t, gamma=0.4, order=2).item()
            ce_values.append(F.cross_entropy(s.logits, labels).item())
            rep_values.append(rep)
            paper_values.append(paper)
            ratios.append(rep / paper)
    ratio = statistics.median(ratios)
    ce = statistics.mean(ce_values)
    print(f"batches {args.batches}, batch {BATCH}, seed {args.seed}, teacher trained {args.teacher_steps} steps "
          f"(accuracy on its last training batch {teacher_accuracy:.2f})")
    print(f"CE (student)                          {ce:.4g}")
    print(f"RepDistiller Correlation, raw         {statistics.mean(rep_values):.4g}")
    print(f"  x 0.02 (published term)             {REPDISTILLER_WEIGHT * statistics.mean(rep_values):.4g}"
          f"  ({REPDISTILLER_WEIGHT * statistics.mean(rep_values) / ce:.3g} of CE)")
    print(f"paper-form cc_loss, raw               {statistics.mean(paper_values):.4g}")
    print(f"  x 0.02 (the old default)            {REPDISTILLER_WEIGHT * statistics.mean(paper_values):.4g}"
          f"  ({REPDISTILLER_WEIGHT * statistics.mean(paper_values) / ce:.3g} of CE)")
    print(f"ratio RepDistiller / paper (median)   {ratio:.4g}  (per batch: {', '.join(f'{r:.3g}' for r in ratios)})")
    print(f"weight matching the published size    {REPDISTILLER_WEIGHT * ratio:.4g}")


def _train(model: nn.Module, draw, steps: int) -> float:
    """``steps`` SGD steps (lr 0.05, momentum 0.9) on CE; the accuracy on the last batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    accuracy = float("nan")
    for _ in range(steps):
        images, labels = draw()
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy = (logits.argmax(1) == labels).float().mean().item()
    return accuracy


if __name__ == "__main__":
    main()
