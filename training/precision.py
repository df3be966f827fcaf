"""The one place that decides a run's mixed precision."""

from __future__ import annotations

import os

import torch

from .script import UserError

CHOICES = ("no", "fp16", "bf16")


def cuda_available() -> bool:
    return torch.cuda.is_available()


def mixed_precision(requested: str | None = None, environ=os.environ) -> str | None:
    """The precision of a run: the one asked for (`no`, `fp16`, `bf16`; bf16 runs on CPU too, fp16
    needs CUDA); else the one an `accelerate launch` flag or config set (None: `Accelerator` reads
    it from the environment); else fp16 on CUDA and none on CPU."""
    if requested is not None and requested not in CHOICES:
        raise UserError(f"mixed precision must be one of {', '.join(CHOICES)}, got {requested!r}")
    if requested == "fp16" and not cuda_available():
        raise UserError("fp16 mixed precision needs a CUDA GPU (use bf16 or no on CPU)")
    if requested is not None:
        return requested
    if "ACCELERATE_MIXED_PRECISION" in environ:
        return None
    return "fp16" if cuda_available() else "no"
