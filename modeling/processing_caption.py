"""One object for everything around the caption model: images in, token ids in and out, text out."""

from __future__ import annotations

from transformers import ProcessorMixin
from transformers.image_processing_utils import BatchFeature


class ProductCaptionProcessor(ProcessorMixin):
    r"""Bundles the `ProductImageProcessor` and the word-level caption tokenizer.

    `processor(images=...)` gives `pixel_values`; `processor(text=...)` gives `input_ids` ([BOS] words
    [EOS], padded) and `labels` (the same ids, -100 on padding); `processor.batch_decode(ids)` gives
    captions. Loads with `AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)`.

    Args:
        image_processor (`ProductImageProcessor`): letterbox + normalisation for the encoder.
        tokenizer (`PreTrainedTokenizerFast`): from `modeling.tokenization_caption.build_caption_tokenizer`.
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(
        self,
        images=None,
        text=None,
        max_length: int | None = None,
        do_match_training_resolution: bool | None = None,
        **kwargs,
    ):
        """`do_match_training_resolution` overrides the image processor's for these images."""
        if images is None and text is None:
            raise ValueError("pass images, text or both")
        data = {}
        if images is not None:
            data.update(
                self.image_processor(
                    images,
                    return_tensors="pt",
                    do_match_training_resolution=do_match_training_resolution,
                )
            )
        if text is not None:
            encoded = self.tokenizer(
                text,
                padding=True,
                truncation=True,
                max_length=max_length or self.tokenizer.model_max_length,
                return_tensors="pt",
            )
            data["input_ids"] = encoded["input_ids"]
            data["attention_mask"] = encoded["attention_mask"]
            data["labels"] = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        return BatchFeature(data)

    def batch_decode(self, sequences, **kwargs):
        kwargs.setdefault("skip_special_tokens", True)
        return self.tokenizer.batch_decode(sequences, **kwargs)

    def decode(self, sequence, **kwargs):
        kwargs.setdefault("skip_special_tokens", True)
        return self.tokenizer.decode(sequence, **kwargs)


__all__ = ["ProductCaptionProcessor"]
