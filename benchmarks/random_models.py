"""Random-weight rating and caption model folders, saved as the training scripts save them.

The app's benchmark times them and the app's tests serve them: weights do not change the work a
forward pass does, and both load them back through `from_pretrained(..., trust_remote_code=True)`
exactly as the app loads a trained model.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

# timm's test models at 32 px with narrow heads: small enough for any test.
TINY_RATING_CONFIG = dict(backbone="test_resnet", image_size=32, head_hidden_size=16)
TINY_CAPTION_CONFIG = dict(
    encoder_name="test_vit",
    image_size=32,
    embed_dim=16,
    hidden_dim=32,
    attention_dim=16,
    max_length=12,
    dropout=0.0,
)


def synthetic_captions() -> list[str]:
    """Every caption the synthetic source can write (8 * 10 * 4 * 4 = 1,280)."""
    from hf_dataset.synthetic import COLOURS, DETAILS, GARMENTS, PATTERN_EFFECT, caption_for

    return [
        caption_for(*combo)
        for combo in itertools.product(COLOURS, PATTERN_EFFECT, GARMENTS, DETAILS)
    ]


def save_random_models(
    folder: str | Path,
    *,
    tiny: bool = True,
    captions: Sequence[str] | None = None,
    initializer_range: float | None = None,
    never_stop: bool = False,
) -> dict[str, Path]:
    """Save a rating model in `folder/rating` and a caption model in `folder/caption`.

    Args:
        tiny: `TINY_*_CONFIG`; otherwise the scripts' default architectures at 224 px (a ResNet-50
            rating model, a ViT-S/16 + attention-LSTM caption model).
        captions: what the caption tokenizer is built from (default: `synthetic_captions()`).
        initializer_range: the std of the heads' initial weights (default: the configs' own);
            a wide one makes different photos get different ratings and captions.
        never_stop: the caption model never writes EOS, so it always runs to `max_length`
            (random weights may pick EOS at once; a benchmark wants the slow case).

    Returns:
        `{"rating": folder/rating, "caption": folder/caption}`.
    """
    import torch

    from modeling import (
        ProductCaptionConfig,
        ProductCaptionModel,
        ProductCaptionProcessor,
        ProductImageProcessor,
        ProductRatingConfig,
        ProductRatingModel,
        build_caption_tokenizer,
    )

    folder = Path(folder)
    init = {} if initializer_range is None else {"initializer_range": initializer_range}
    torch.manual_seed(0)
    # with a quantile head and an interval, as train_rating.py saves a model (the margin is made up)
    interval = {"method": "quantile", "coverage": 0.9, "margin": 0.1}
    rating_kwargs = {**(TINY_RATING_CONFIG if tiny else {}), **init}
    rating = ProductRatingModel(
        ProductRatingConfig(**rating_kwargs, quantile_levels=[0.05, 0.95], interval=interval)
    )
    rating.save_pretrained(folder / "rating")
    size = rating.config.image_size
    ProductImageProcessor.from_timm(rating.backbone, size).save_pretrained(folder / "rating")

    caption_kwargs = {**(TINY_CAPTION_CONFIG if tiny else {}), **init}
    max_length = caption_kwargs.get("max_length", ProductCaptionConfig.max_length)
    tokenizer = build_caption_tokenizer(
        synthetic_captions() if captions is None else captions,
        min_frequency=1,
        max_length=max_length,
    )
    caption = ProductCaptionModel(ProductCaptionConfig(vocab_size=len(tokenizer), **caption_kwargs))
    if never_stop:
        with torch.no_grad():
            caption.decoder.lm_head.bias[caption.config.eos_token_id] = -1e4
    caption.save_pretrained(folder / "caption")
    processor = ProductImageProcessor.from_timm(caption.encoder, caption.config.image_size)
    ProductCaptionProcessor(processor, tokenizer).save_pretrained(folder / "caption")
    return {"rating": folder / "rating", "caption": folder / "caption"}
