"""Configuration of the rating model: the single source of its shapes and of its loss."""

# No `from __future__ import annotations`: `@strict` checks each field against its annotation, and
# cannot resolve annotations left as strings.
from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

_FLOAT_FIELDS = (
    "dropout",
    "drop_path_rate",
    "huber_delta",
    "min_rating",
    "max_rating",
    "rating_prior",
    "initializer_range",
)


@strict
class ProductRatingConfig(PreTrainedConfig):
    r"""Configuration of a [`ProductRatingModel`]: a timm backbone and a small head that predicts one star
    rating in `[min_rating, max_rating]`.

    Args:
        backbone (`str`, defaults to `"resnet50"`): any timm model name (`timm.list_models()`). Its
            pooled features feed the head; its classifier is dropped.
        freeze_backbone (`bool`, defaults to `False`): keep the backbone's weights fixed (no gradients,
            always in eval mode, so its norm statistics do not move); only the head trains.
        image_size (`int`, defaults to 224): side of the square images the model is trained on; the image
            processor saved beside the model letterboxes to this size.
        head_hidden_size (`int`, defaults to 256): width of the head's hidden layer; 0 gives a single
            linear layer on the pooled features.
        dropout (`float`, defaults to 0.2): dropout on the pooled features and on the hidden layer.
        drop_path_rate (`float`, defaults to 0.0): stochastic depth inside the backbone (timm argument).
        huber_delta (`float`, defaults to 1.0): where the Huber loss turns from squared to absolute
            error, in stars. A few products are rated far from what their photo suggests; an absolute
            loss on those keeps them from dominating the gradient.
        min_rating / max_rating (`float`, defaults to 1.0 / 5.0): the output range; the model cannot
            predict outside it.
        rating_prior (`float`, defaults to 3.0): what a freshly initialised head predicts (its output
            bias is set so). Training sets it to the mean training rating, so the first step starts from
            the best constant predictor instead of having to learn it.
        initializer_range (`float`, defaults to 0.02): std of the head's normal weight initialisation.
        quantile_levels (`list[float]`, *optional*): a lower and an upper quantile level (e.g.
            `[0.05, 0.95]`) that a second head learns per photo, with the pinball loss; None: no such head.
        interval (`dict`, *optional*): the calibrated interval the model returns with each rating, set by
            the training script on the validation split: `{"method": "quantile" | "absolute", "coverage":
            0.9, "margin": 0.21}` (see `modeling_rating.conformal_interval`); None: no interval.
        pretrained_weights (`dict`, *optional*): where the backbone's pretrained weights came from
            (`modeling.backbone.load_backbone_weights`); None for a random init. Recorded for the model
            card, never read to build the model.

    As a transformers regression model it has `num_labels=1`, `problem_type="regression"` and
    `id2label={0: "rating"}`.

    Example:

    ```python
    >>> from modeling import ProductRatingConfig, ProductRatingModel
    >>> model = ProductRatingModel(ProductRatingConfig(backbone="resnet18", image_size=96))
    ```
    """

    model_type = "product_rating"
    # `logits` repeats `predictions` (B, 1) for transformers' pipelines and `interval` follows from
    # them: Trainer gathers the ratings and the quantile head's bounds only
    keys_to_ignore_at_inference = ["logits", "interval"]

    backbone: str = "resnet50"
    freeze_backbone: bool = False
    image_size: int = 224
    head_hidden_size: int = 256
    # an int is taken and stored as a float (`__post_init__`)
    dropout: float | int = 0.2
    drop_path_rate: float | int = 0.0
    huber_delta: float | int = 1.0
    min_rating: float | int = 1.0
    max_rating: float | int = 5.0
    rating_prior: float | int = 3.0
    initializer_range: float | int = 0.02
    quantile_levels: list | None = None
    interval: dict | None = None
    pretrained_weights: dict | None = None

    def __post_init__(self, **kwargs):
        if not self.min_rating < self.max_rating:
            raise ValueError(
                f"min_rating ({self.min_rating}) must be below max_rating ({self.max_rating})"
            )
        if not self.min_rating < self.rating_prior < self.max_rating:
            raise ValueError(
                f"rating_prior ({self.rating_prior}) must lie strictly between "
                f"{self.min_rating} and {self.max_rating}"
            )
        if self.huber_delta <= 0:
            raise ValueError(f"huber_delta must be positive, got {self.huber_delta}")
        if self.image_size < 1 or self.head_hidden_size < 0:
            raise ValueError("image_size must be positive and head_hidden_size non-negative")
        if self.quantile_levels is not None:
            low, high = self.quantile_levels
            if not 0.0 < low < high < 1.0:
                raise ValueError(
                    f"quantile_levels must be 0 < low < high < 1, got {self.quantile_levels}"
                )
        if self.interval is not None:
            if self.interval.get("method") == "quantile" and self.quantile_levels is None:
                raise ValueError(
                    "interval method 'quantile' needs quantile_levels (the quantile head)"
                )
            if not 0.0 < self.interval.get("coverage", 0.0) < 1.0:
                raise ValueError(f"interval coverage must lie in (0, 1), got {self.interval}")
        for name in _FLOAT_FIELDS:
            setattr(self, name, float(getattr(self, name)))  # so 1 and 1.0 save the same
        # a regression model as transformers describes one: one output, named; the
        # image-classification pipeline then reports it as {"label": "rating", "score": 4.2}
        self.problem_type = self.problem_type or "regression"
        if self.id2label is None:
            self.id2label, self.label2id = {0: "rating"}, {"rating": 0}
        super().__post_init__(**kwargs)
