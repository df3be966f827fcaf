"""The rating model (tiny timm backbones, 32-64 px, CPU)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModel

from modeling import ProductImageProcessor, ProductRatingConfig, ProductRatingModel


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine the threads wait on each other
    (measured here: 15 ms per step with one thread, over 1 s with two while other jobs ran)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_model(backbone="test_resnet", image_size=32, **kwargs) -> ProductRatingModel:
    torch.manual_seed(0)
    config = ProductRatingConfig(
        backbone=backbone, image_size=image_size, head_hidden_size=16, **kwargs
    )
    return ProductRatingModel(config)


def train_a_little(model, steps=3, size=32):
    """Move every weight (and the BatchNorm statistics) away from any initialisation."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(torch.randn(4, 3, size, size), labels=torch.tensor([1.0, 2.0, 4.0, 5.0])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def test_forward_backward_reaches_every_parameter():
    model = tiny_model()
    out = model(torch.randn(2, 3, 32, 32), labels=torch.tensor([1.5, 4.5]))
    assert out.predictions.shape == (2,) and out.loss.ndim == 0
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_predictions_stay_within_bounds_even_for_extreme_inputs():
    model = tiny_model().eval()
    with torch.no_grad():
        for pixels in (torch.randn(2, 3, 32, 32) * 1e4, torch.full((2, 3, 32, 32), -1e4)):
            for bias in (1e4, -1e4, 0.0):
                model.head_out.bias.fill_(bias)
                predictions = model(pixels).predictions
                assert torch.isfinite(predictions).all()
                assert ((predictions >= 1.0) & (predictions <= 5.0)).all(), predictions


def test_fresh_head_predicts_the_prior():
    model = tiny_model(rating_prior=4.2).eval()
    with torch.no_grad():
        predictions = model(torch.randn(4, 3, 32, 32)).predictions
    assert torch.allclose(predictions, torch.full((4,), 4.2), atol=0.05)


def test_weighted_loss():
    model = tiny_model().eval()
    pixels, labels = torch.randn(2, 3, 32, 32), torch.tensor([1.0, 5.0])
    with torch.no_grad():
        plain = model(pixels, labels=labels).loss
        equal = model(pixels, labels=labels, weights=torch.tensor([3.0, 3.0])).loss
        first_only = model(pixels, labels=labels, weights=torch.tensor([1.0, 0.0])).loss
        first = model(pixels[:1], labels=labels[:1]).loss
    assert torch.allclose(plain, equal) and torch.allclose(first_only, first)


def test_config_validation():
    with pytest.raises(ValueError, match="rating_prior"):
        ProductRatingConfig(rating_prior=5.0)
    with pytest.raises(ValueError, match="huber_delta"):
        ProductRatingConfig(huber_delta=0)
    with pytest.raises(ValueError, match="unknown timm backbone"):
        ProductRatingModel(ProductRatingConfig(backbone="resnet5O"))


@pytest.mark.parametrize("backbone, size", [("test_resnet", 32), ("test_coatnet", 64)])
def test_save_load_keeps_every_weight(tmp_path, backbone, size):
    # test_coatnet has non-persistent buffers (relative position indices) that are not saved.
    model = train_a_little(tiny_model(backbone, size), size=size)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is ProductRatingModel
    before, after = model.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"changed by loading: {changed}"
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(model(pixels).predictions, loaded(pixels).predictions)


def test_one_batch_overfits():
    model = tiny_model(dropout=0.0)
    pixels, labels = torch.randn(4, 3, 32, 32), torch.tensor([1.2, 2.5, 3.7, 4.8])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model(pixels, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    # Judged in train mode (batch statistics, as during the steps): after 60 steps the BatchNorm
    # running averages have not caught up yet, which is not what this test is about.
    with torch.no_grad():
        predictions = model(pixels).predictions
    assert (predictions - labels).abs().max() < 0.1, predictions


def _save_with_processor(model, path, size=32):
    model.save_pretrained(path)
    ProductImageProcessor.from_timm(model.backbone, size).save_pretrained(path)


def test_auto_classes_load_in_package(tmp_path):
    model = train_a_little(tiny_model())
    _save_with_processor(model, tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), ProductRatingConfig)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, ProductImageProcessor) and processor.image_size == 32


def test_trust_remote_code_loads_without_this_package(tmp_path):
    model = train_a_little(tiny_model())
    saved = tmp_path / "model"
    _save_with_processor(model, saved)
    for name in (
        "configuration_rating.py",
        "modeling_rating.py",
        "backbone.py",
        "image_processing.py",
        "model.safetensors",
        "preprocessor_config.json",
    ):
        assert (saved / name).is_file(), f"{name} missing from the saved folder"
    image = Image.new("RGB", (50, 30), (200, 30, 40))
    with torch.no_grad():
        expected = model(**ProductImageProcessor.from_pretrained(saved)(image)).predictions

    script = f"""
import json, sys
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel
model = AutoModel.from_pretrained({str(saved)!r}, trust_remote_code=True).eval()
processor = AutoImageProcessor.from_pretrained({str(saved)!r}, trust_remote_code=True)
assert not any(m == "modeling" or m.startswith("modeling.") for m in sys.modules), "package imported"
with torch.no_grad():
    out = model(**processor(Image.new("RGB", (50, 30), (200, 30, 40))))
print(json.dumps({{"model": type(model).__module__, "predictions": out.predictions.tolist()}}))
"""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),  # a fresh HF cache: nothing cached from this session helps
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["model"].startswith("transformers_modules.")
    assert torch.allclose(torch.tensor(answer["predictions"]), expected, atol=1e-5)
