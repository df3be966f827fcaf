"""The two model families (rating, caption) and what they share: timm backbones and image processing."""

from .image_processing import ProductImageProcessor

__all__ = ["ProductImageProcessor"]
