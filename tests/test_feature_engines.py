"""The feature cache's engines: ONNX Runtime gives torch's fp32 features; torch takes over where it
cannot run."""

import pytest
import torch

from modeling import ProductCaptionConfig, ProductCaptionModel, ProductImageProcessor
from training import feature_engines
from training.captions import cached_features, feature_cache_key


def tiny_model(encoder: str, train_last_blocks: int = 0) -> ProductCaptionModel:
    torch.manual_seed(0)
    config = ProductCaptionConfig(
        encoder_name=encoder, image_size=32, train_last_blocks=train_last_blocks
    )
    return ProductCaptionModel(config).eval()


@pytest.mark.parametrize(
    "encoder, train_last_blocks",
    [("test_vit", 0), ("test_resnet", 0), ("tf_efficientnet_lite0", 1)],
)
def test_onnxruntime_gives_the_frozen_features_of_torch_fp32(encoder, train_last_blocks):
    model = tiny_model(encoder, train_last_blocks)
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model.frozen_features(pixels)
    with feature_engines.open_engine(model, 32, "onnxruntime", "cpu") as (ran, encode):
        assert ran == "onnxruntime"
        got = encode(pixels)
        # the exported batch is dynamic: another size runs in the same session
        assert encode(pixels[:1]).shape == (1, *expected.shape[1:])
    assert got.shape == expected.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_an_encoder_that_does_not_export_falls_back_to_torch_and_says_why(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("cannot trace this encoder\nsecond line")

    monkeypatch.setattr(feature_engines, "export_onnx", fail)
    model, said = tiny_model("test_resnet"), []
    pixels = torch.randn(2, 3, 32, 32)
    with feature_engines.open_engine(model, 32, "onnxruntime", "cpu", log=said.append) as (
        ran,
        encode,
    ):
        assert ran == "torch"
        with torch.no_grad():
            torch.testing.assert_close(encode(pixels), model.frozen_features(pixels))
    assert said == [
        "feature cache: onnxruntime not used, export failed (RuntimeError: cannot trace this "
        "encoder); encoding with torch"
    ]
    with pytest.raises(ValueError, match="unknown feature cache engine 'tvm'"):
        with feature_engines.open_engine(model, 32, "tvm", "cpu"):
            pass


def test_onnxruntime_is_for_cpus_and_must_be_installed(monkeypatch):
    assert feature_engines.usable("onnxruntime", "cpu") is None
    assert feature_engines.usable("torch", "cuda") is None
    assert "CPU" in feature_engines.usable("onnxruntime", "cuda")
    monkeypatch.setattr(feature_engines.importlib.util, "find_spec", lambda name: None)
    assert feature_engines.usable("onnxruntime", "cpu") == "onnxruntime is not installed"


def test_each_engine_has_its_own_cache_and_a_failed_export_writes_torchs(
    tiny_synthetic, tmp_path, monkeypatch
):
    from accelerate import Accelerator

    from training.captions import load_caption_dataset

    dataset, _ = load_caption_dataset(tiny_synthetic)
    model = tiny_model("test_vit")
    processor = ProductImageProcessor.from_timm(model.encoder, 32)
    accelerator = Accelerator(cpu=True)
    kwargs = dict(splits=["validation"], batch_size=16)

    def key(engine):
        return feature_cache_key(
            model, processor, dataset["validation"], False, "no", engine=engine
        )

    assert key("onnxruntime") != key("torch")
    ort = cached_features(
        model, processor, dataset, accelerator, False, cache_dir=tmp_path / "a", **kwargs
    )
    assert [p.name for p in (tmp_path / "a").iterdir()] == [
        f"validation-{key('onnxruntime')}.safetensors"
    ]
    monkeypatch.setattr(feature_engines, "export_onnx", lambda *a, **k: 1 / 0)
    eager = cached_features(
        model, processor, dataset, accelerator, False, cache_dir=tmp_path / "b", **kwargs
    )
    assert [p.name for p in (tmp_path / "b").iterdir()] == [
        f"validation-{key('torch')}.safetensors"
    ]
    # both stored in float16: the engines agree to its rounding
    torch.testing.assert_close(ort["validation"], eager["validation"], rtol=2e-3, atol=2e-3)
