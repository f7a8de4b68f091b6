"""Architectures of the published CIFAR distillation tables (CRD / RepDistiller, mdistiller) and torchvision.

``ZOO_MODELS`` maps each registry name to ``(config_class, builder)``; ``core.models`` merges it into
``MODELS``, so ``build_model({"name": "resnet32x4", "in_shape": [3, 32, 32], "num_classes": 100})`` works.
Every built model has ``feature_layers``: module paths of its stage outputs, shallow to deep, that
feature-based methods can hook (each family's module docstring describes them and their shapes).
This package never imports ``core.models``, so either can be imported first.
"""

from __future__ import annotations

from distillation_studies.learning.zoo import mobilenetv2, resnet_cifar, shufflenet, torchvision_models, vgg, wrn
from distillation_studies.learning.zoo.common import ZooConfig, ZooEntry

ZOO_MODELS: dict[str, ZooEntry] = {
    **resnet_cifar.ENTRIES,
    **wrn.ENTRIES,
    **vgg.ENTRIES,
    **mobilenetv2.ENTRIES,
    **shufflenet.ENTRIES,
    **torchvision_models.ENTRIES,
}

__all__ = ["ZOO_MODELS", "ZooConfig", "ZooEntry"]
