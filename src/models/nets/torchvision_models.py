"""Any torchvision classification model by name, with its published pre-trained weights (online
users): the ImageNet backbones researchers fine-tune, behind the same classifier interface."""

from __future__ import annotations

import torch
from torch import nn

from src.core.errors import ConfigError, describe
from src.core.output import output_layer


class TorchvisionClassifier(nn.Module):
    """``torchvision.models.get_model(name, weights=weights)`` with its output layer replaced by a
    fresh one of ``num_classes`` outputs (when the count differs) and greyscale input repeated to
    the 3 channels the weights expect.

    ``weights``: ``DEFAULT`` (the best published), an enum name (``IMAGENET1K_V1``), or None (random
    initialisation). Downloaded once into ``$TORCH_HOME/hub/checkpoints``; offline, a weights file
    not already there is one line naming the fix. Inputs keep the data's own normalisation: the
    fine-tuning adapts to it.
    """

    def __init__(self, name: str, num_classes: int, in_channels: int = 3, weights: str | None = "DEFAULT") -> None:
        super().__init__()
        import torchvision
        from torchvision.models import get_model, list_models

        classifiers = list_models(module=torchvision.models)
        if name not in classifiers:
            raise ConfigError(f"model.net.name={name} is not a torchvision classification model; e.g. "
                              f"{', '.join(n for n in classifiers if n.startswith(('resnet', 'efficientnet_b0', 'convnext_t')))}")
        try:
            self.model = get_model(name, weights=weights)
        except (OSError, RuntimeError) as e:  # URLError is an OSError: offline, or a truncated download
            raise ConfigError(f"model.net.weights={weights} of {name} could not be loaded ({describe(e, 120)}); go online "
                              "once (cached in $TORCH_HOME/hub/checkpoints), or train from scratch: model.net.weights=null") from e
        except ValueError as e:  # an unknown weights name
            raise ConfigError(f"model.net.weights={weights}: {describe(e, 160)}") from e
        head, old = output_layer(self.model)
        if old.out_features != num_classes:
            self.model.set_submodule(head, nn.Linear(old.in_features, num_classes))
        if in_channels not in (1, 3):
            raise ConfigError(f"{name} takes 3-channel (or greyscale, repeated) images, not {in_channels} channels")
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.model(x)
