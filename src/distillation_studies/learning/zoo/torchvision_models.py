"""Any torchvision classification model by name, always randomly initialised (``weights=None``).

Spec: ``{"name": "torchvision", "arch": "resnet18", "in_shape": [3, 32, 32], "num_classes": 10}``;
``arch`` is any name in ``torchvision.models.list_models(module=torchvision.models)``. Nothing is ever
downloaded. Inputs with other than 3 channels get a fresh first convolution of the same geometry;
``vit_*`` models are built for the spec's image size (which must divide by their patch size);
``googlenet`` and ``inception_v3`` are built without auxiliary heads so they return plain logits.
The ImageNet stems are kept, so 32x32 inputs are down-sampled early (and ``inception_v3`` needs at
least 75x75): these models are for comparison, the CIFAR families are the other zoo files.

Module paths: each built model carries ``model.feature_layers``, the stage outputs shallow to deep,
found from the module tree rather than a forward pass:

* ResNet / ResNeXt / Wide ResNet: ``layer1`` .. ``layer4``, then ``avgpool`` (``(C, 1, 1)`` embedding)
* ViT: ``encoder.layers.encoder_layer_<i>`` then ``encoder.ln`` (token sequences ``(L, D)``)
* otherwise the last child of the trunk at each resolution: the trunk is ``features`` (or RegNet's
  ``trunk_output``, MNASNet's ``layers``, MaxViT's ``blocks``, else the top-level modules minus
  classifier/aux/pool/dropout), and a child ends a resolution when the next child down-samples (holds a
  strided conv or pool, or is a Swin patch merge) or it is the trunk's last; then ``avgpool`` where the
  model has one. E.g. VGG11: ``features.1, .4, .9, .14, .19, .20, avgpool`` (the ReLUs before the
  max-pools, then the last max-pool); MobileNetV2: ``features.1, .3, .6, .13, .18``; EfficientNet-B0:
  ``features.1, .2, .3, .5, .8, avgpool`` (the last one at a resolution can be a 1x1 head conv).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from torch import nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.zoo.common import ZooEntry, image_channels

TRUNKS = ("features", "trunk_output", "layers", "blocks")
NOT_TRUNK = {"fc", "classifier", "heads", "head", "dropout", "avgpool", "aux1", "aux2", "AuxLogits", "flatten"}


@lru_cache(maxsize=1)
def classification_models() -> tuple[str, ...]:
    """Every torchvision image-classification model name (detection/segmentation/video excluded)."""
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


@dataclass(frozen=True)
class TorchvisionConfig:
    """``arch``: a torchvision classification model name, e.g. ``resnet18`` (never pretrained)."""

    arch: str = ""

    def check(self, where: str) -> None:
        if not isinstance(self.arch, str) or self.arch not in classification_models():
            raise ConfigError(
                f"{where}.arch: unknown torchvision classification model {self.arch!r}; "
                f"allowed: {list(classification_models())}"
            )


def build_torchvision(cfg: TorchvisionConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    import torchvision

    channels = image_channels(in_shape)
    options: dict = {"weights": None, "num_classes": num_classes}
    if cfg.arch in ("googlenet", "inception_v3"):
        options.update(aux_logits=False, init_weights=True)
    if cfg.arch.startswith("vit_"):
        options["image_size"] = int(in_shape[-1])
    try:
        model = torchvision.models.get_model(cfg.arch, **options)
    except (ValueError, AssertionError) as error:
        raise ConfigError(
            f"model.arch: torchvision {cfg.arch!r} cannot be built for in_shape {list(in_shape)}: {error}"
        ) from None
    if channels != 3:
        replace_input_conv(model, channels)
    model.feature_layers = stage_outputs(model)
    return model


def replace_input_conv(model: nn.Module, channels: int) -> None:
    """Swap the first 3-channel ``Conv2d`` for a freshly initialised one taking ``channels`` inputs."""
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3 and module.groups == 1:
            fresh = nn.Conv2d(
                channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                bias=module.bias is not None,
                padding_mode=module.padding_mode,
            )
            parent, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent), child, fresh)
            return
    raise ConfigError(f"model.in_shape: cannot adapt {type(model).__name__} to {channels} input channels")


def _downsamples(module: nn.Module) -> bool:
    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            stride = sub.stride if sub.stride is not None else sub.kernel_size
            if max(stride if isinstance(stride, tuple) else (stride,)) > 1:
                return True
        if type(sub).__name__.startswith("PatchMerging"):
            return True
    return False


def stage_outputs(model: nn.Module) -> tuple[str, ...]:
    """Stage-output module paths of a torchvision classifier, shallow to deep (see the module docstring)."""
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):
        layers = [f"layer{i}" for i in range(1, 5)]
    elif hasattr(model, "encoder") and hasattr(model.encoder, "layers"):
        layers = [f"encoder.layers.{name}" for name, _ in model.encoder.layers.named_children()] + ["encoder.ln"]
    else:
        containers = (nn.Sequential, nn.ModuleList)
        trunk = next((name for name in TRUNKS if isinstance(getattr(model, name, None), containers)), None)
        if trunk is not None:
            children = [(f"{trunk}.{name}", child) for name, child in getattr(model, trunk).named_children()]
        else:
            children = [(name, child) for name, child in model.named_children() if name not in NOT_TRUNK]
        layers = [path for (path, _), (_, nxt) in zip(children, children[1:]) if _downsamples(nxt)]
        if children:
            layers.append(children[-1][0])
    if isinstance(getattr(model, "avgpool", None), nn.Module):
        layers.append("avgpool")
    return tuple(dict.fromkeys(layers))


ENTRIES: dict[str, ZooEntry] = {"torchvision": ZooEntry(TorchvisionConfig, build_torchvision)}
