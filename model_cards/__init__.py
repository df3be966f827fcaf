"""Model cards filled from real results, and publishing models and the Space to the Hugging Face Hub."""

from .card import describe_dataset, update_model_card, write_model_card
from .space import PublishError, assemble_space, hub_call, publish_space

__all__ = [
    "PublishError",
    "assemble_space",
    "describe_dataset",
    "hub_call",
    "publish_space",
    "update_model_card",
    "write_model_card",
]
