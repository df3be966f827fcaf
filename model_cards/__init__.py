"""Model cards filled from real results, and publishing models and the Space to the Hugging Face Hub."""

from .card import describe_dataset, update_model_card, weights_line, write_model_card
from .hub import PublishError, hub_call, push_model
from .space import assemble_space, publish_space

__all__ = [
    "PublishError",
    "assemble_space",
    "describe_dataset",
    "hub_call",
    "publish_space",
    "push_model",
    "update_model_card",
    "weights_line",
    "write_model_card",
]
