"""Train a study's teacher data-parallel with ``torchrun``, then import it into the study.

For the one model that needs several GPUs (usually the teacher), run outside Kedro:

    torchrun --nproc_per_node=4 -m distillation_studies.ddp_teacher --env cifar100_benchmark \\
        --out data/06_models/imported/teacher.pt

and point the study at it (``teacher.checkpoint: data/06_models/imported/teacher.pt``). It reads the
same ``conf/`` (base plus ``--env``), validates the whole study first, trains through the one training
loop (each process takes its share of every global batch; gradients are averaged), and rank 0 writes
the checkpoint (spec + state dict). NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.distributed as dist
from kedro.config import OmegaConfigLoader

from distillation_studies.learning.methods import build_method, parse_method_config
from distillation_studies.learning.models import build_model
from distillation_studies.learning.streaming import labels_of
from distillation_studies.study.schema import validate_study
from distillation_studies.learning.training import train
from distillation_studies.datasets import model_payload
from distillation_studies.pipelines.data_processing.nodes import load_images, split_images


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="local", help="Kedro environment under conf/ (default: local)")
    parser.add_argument("--conf", default="conf", help="configuration folder")
    parser.add_argument("--out", required=True, help="where rank 0 writes the teacher checkpoint")
    args = parser.parse_args(argv)

    params = OmegaConfigLoader(args.conf, env=args.env, base_env="base", default_run_env="local")["parameters"]
    study = validate_study(params)  # every error before any process trains
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        model_input, _ = split_images(load_images(study.data), study.data)
        spec, training, seed = study.teacher.spec, study.teacher.training, study.teacher.seed
        torch.manual_seed(seed)
        teacher = build_model(spec)
        loss = build_method("ce", parse_method_config("ce", {}, "teacher"), teacher, None, len(labels_of(model_input["train"])))
        result = train(teacher, loss, model_input["train"], model_input["val"], training, seed, label="teacher (ddp)")
        teacher.load_state_dict(result.best_state)
        if dist.get_rank() == 0:
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model_payload(teacher), out)
            print(f"teacher written to {out} (best epoch {result.best_epoch}, val accuracy {result.summary['best_val_accuracy']:.4f})")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
