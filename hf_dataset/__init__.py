"""Build Hugging Face image datasets of fashion products (see docs/DESIGN.md for the contract)."""

from .build import BuildError, base_features, encode_image, write_dataset
from .splits import SPLITS, split_for

__all__ = ["SPLITS", "BuildError", "base_features", "encode_image", "split_for", "write_dataset"]
