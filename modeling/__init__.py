"""The two model families (rating, caption) and what they share: timm backbones and image processing.

Importing this package registers the models with the Auto classes, so `AutoConfig`, `AutoModel` and
`AutoImageProcessor` load a saved folder without `trust_remote_code`. `register_for_auto_class` makes
`save_pretrained` copy the code files next to the weights (`auto_map`), so the same folder also loads
with `trust_remote_code=True` where this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForImageTextToText,
)

from .configuration_caption import ProductCaptionConfig
from .configuration_rating import ProductRatingConfig
from .image_processing import ProductImageProcessor
from .modeling_caption import ProductCaptionModel
from .modeling_rating import ProductRatingModel
from .processing_caption import ProductCaptionProcessor
from .tokenization_caption import build_caption_tokenizer

# shared: the image processor saves its code beside every model
ProductImageProcessor.register_for_auto_class("AutoImageProcessor")

# rating
ProductRatingConfig.register_for_auto_class()
ProductRatingModel.register_for_auto_class("AutoModel")
AutoConfig.register(ProductRatingConfig.model_type, ProductRatingConfig)
AutoModel.register(ProductRatingConfig, ProductRatingModel)
AutoModelForImageClassification.register(ProductRatingConfig, ProductRatingModel)
AutoImageProcessor.register(
    ProductRatingConfig, image_processor_classes={"torchvision": ProductImageProcessor}
)

# caption
ProductCaptionConfig.register_for_auto_class()
ProductCaptionModel.register_for_auto_class("AutoModel")
ProductCaptionProcessor.register_for_auto_class("AutoProcessor")
AutoConfig.register(ProductCaptionConfig.model_type, ProductCaptionConfig)
AutoModel.register(ProductCaptionConfig, ProductCaptionModel)
AutoModelForImageTextToText.register(ProductCaptionConfig, ProductCaptionModel)

__all__ = [
    "ProductCaptionConfig",
    "ProductCaptionModel",
    "ProductCaptionProcessor",
    "ProductImageProcessor",
    "ProductRatingConfig",
    "ProductRatingModel",
    "build_caption_tokenizer",
]
