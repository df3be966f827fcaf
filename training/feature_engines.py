"""What runs the frozen encoder layers when a feature cache is filled: ONNX Runtime or PyTorch.

The cache runs the frozen part of the encoder (`model.frozen_features`) once over every photo, so it
can run in any engine that gives the same features. ONNX Runtime's CPU provider computes them in
fp32, equal to PyTorch's fp32 features to 1e-4, and several times faster than PyTorch eager in bf16
(BENCHMARKS.md, `benchmarks/bench_cache_engines.py`). The saved model stays plain PyTorch: only the
cache uses the engine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

ENGINES = ("onnxruntime", "torch")
DEFAULT_ENGINE = "onnxruntime"

Encode = Callable[[torch.Tensor], torch.Tensor]  # pixels (B, 3, S, S) -> frozen features


class FrozenFeatures(nn.Module):
    """`model.frozen_features` as a module of its own: what is exported."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.frozen_features(pixel_values)


def export_onnx(model, image_size: int, path: Path) -> Path:
    """The frozen encoder layers (eval mode, fp32) as an ONNX file with a dynamic batch."""
    example = torch.zeros(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with contextlib.redirect_stdout(sys.stderr):  # the exporter prints its progress
        torch.onnx.export(
            FrozenFeatures(model).eval(),
            (example,),
            str(path),
            input_names=["pixel_values"],
            output_names=["features"],
            dynamic_shapes={"pixel_values": {0: batch}},
            dynamo=True,
            external_data=False,
        )
    return path


def onnxruntime_encode(model, image_size: int, threads: int | None = None) -> Encode:
    """ONNX Runtime's CPU provider on the exported frozen layers, with `threads` (default: torch's
    thread count)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers are not the user's concern
    with tempfile.TemporaryDirectory(prefix="frozen_features_") as tmp:
        path = export_onnx(model, image_size, Path(tmp) / "frozen.onnx")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        (features,) = session.run(None, {"pixel_values": pixels.float().contiguous().numpy()})
        return torch.from_numpy(features)

    return encode


@contextlib.contextmanager
def torch_encode(model, device, autocast=contextlib.nullcontext) -> Iterator[Encode]:
    """PyTorch eager in `channels_last` (oneDNN's convolutions, depthwise ones above all, run faster
    in that layout; a ViT only sees it in its patch embedding), in `autocast`'s precision."""
    model.encoder.to(memory_format=torch.channels_last)

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        with autocast():
            return model.frozen_features(pixels.to(device, memory_format=torch.channels_last))

    try:
        yield encode
    finally:
        model.encoder.to(memory_format=torch.contiguous_format)


def usable(engine: str, device) -> str | None:
    """Why `engine` cannot fill a cache here, or None when it can."""
    if engine == "onnxruntime":
        if torch.device(device).type != "cpu":
            return "its CPU provider is for CPUs; on a GPU the cache runs in torch"
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
    return None


def fallback_line(engine: str, reason: str) -> str:
    return f"feature cache: {engine} not used, {reason}; encoding with torch"


def choose_engine(engine: str, device, log=print) -> str:
    """`engine` where it can run here, else torch (said through `log`)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown feature cache engine {engine!r}: choose from {ENGINES}")
    reason = usable(engine, device)
    if reason:
        log(fallback_line(engine, reason))
        return "torch"
    return engine


@contextlib.contextmanager
def open_engine(
    model,
    image_size: int,
    engine: str,
    device,
    autocast=contextlib.nullcontext,
    log=print,
    threads: int | None = None,
) -> Iterator[tuple[str, Encode]]:
    """(the engine that runs, its encode function): `engine`, or torch where it cannot run here or
    cannot export this encoder (said through `log`). `threads`: ONNX Runtime's (default torch's)."""
    if choose_engine(engine, device, log) == "onnxruntime":
        try:
            encode = onnxruntime_encode(model, image_size, threads)
        except Exception as err:  # an encoder the exporter cannot trace: the eager path
            reason = f"export failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
            log(fallback_line(engine, reason))
        else:
            yield engine, encode
            return
    with torch_encode(model, device, autocast) as encode:
        yield "torch", encode
