"""The two model families (rating, caption) and what they share: timm backbones and image processing."""

from transformers import AutoConfig, AutoModel

from .configuration_caption import ProductCaptionConfig
from .image_processing import ProductImageProcessor
from .modeling_caption import ProductCaptionModel
from .processing_caption import ProductCaptionProcessor
from .tokenization_caption import build_caption_tokenizer

# In this package the Auto classes know the models directly; `register_for_auto_class` makes
# `save_pretrained` copy the code and write `auto_map`, so `trust_remote_code=True` works without it.
AutoConfig.register(ProductCaptionConfig.model_type, ProductCaptionConfig)
AutoModel.register(ProductCaptionConfig, ProductCaptionModel)
ProductCaptionConfig.register_for_auto_class()
ProductCaptionModel.register_for_auto_class("AutoModel")
ProductImageProcessor.register_for_auto_class("AutoImageProcessor")
ProductCaptionProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "ProductCaptionConfig",
    "ProductCaptionModel",
    "ProductCaptionProcessor",
    "ProductImageProcessor",
    "build_caption_tokenizer",
]
