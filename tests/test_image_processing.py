import io
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from hf_dataset import build as dataset_build
from hf_dataset.download import process_image
from modeling.backbone import (
    create_backbone,
    create_sized_backbone,
    load_backbone_weights,
    parse_pretrained,
)
from modeling.image_processing import ProductImageProcessor, load_image, to_rgb


def test_letterbox_keeps_proportions_and_pads_white():
    processor = ProductImageProcessor(image_size=32, image_mean=(0, 0, 0), image_std=(1, 1, 1))
    wide = Image.new("RGB", (200, 100), (255, 0, 0))  # 2:1 red bar
    pixels = processor(wide)["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)
    red = pixels[0, 0]
    assert torch.allclose(red[16], torch.ones(32))  # middle row: red channel everywhere
    assert torch.allclose(pixels[0, 1, 0], torch.ones(32))  # top row is white padding (green = 1)
    assert torch.allclose(pixels[0, 1, 16], torch.zeros(32), atol=0.02)  # middle row has no green


def test_train_and_eval_transforms_agree_without_augmentation():
    processor = ProductImageProcessor(image_size=48, train_crop_scale=(1.0, 1.0))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8))
    torch.manual_seed(0)
    train = processor.train_transform()(image)
    evaluation = processor.eval_transform()(image)
    assert train.shape == evaluation.shape == (3, 48, 48)
    # with the crop disabled, training differs from evaluation at most by a horizontal flip
    assert torch.allclose(train, evaluation, atol=1e-5) or torch.allclose(
        train, evaluation.flip(-1), atol=1e-5
    )


def test_uint8_transforms_then_normalize_equal_the_float_transforms():
    """The GPU path (uint8 from the loader, normalised on the device) sees what the CPU path sees."""
    processor = ProductImageProcessor(
        image_size=48, image_mean=(0.4, 0.5, 0.6), image_std=(0.2, 0.3, 0.25)
    )
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8))
    for name in ("train_transform", "eval_transform"):
        torch.manual_seed(1)  # the same random crop and flip for both
        as_float = getattr(processor, name)()(image)
        torch.manual_seed(1)
        as_uint8 = getattr(processor, name)(normalize=False)(image)
        assert as_uint8.dtype == torch.uint8 and as_uint8.shape == (3, 48, 48)
        batch = processor.normalize(torch.stack([as_uint8, as_uint8]))  # batched, as on the GPU
        assert batch.dtype == torch.float32
        assert torch.allclose(batch[0], as_float, atol=1e-6) and torch.equal(batch[0], batch[1])


@pytest.mark.parametrize(
    "mode, make",
    [
        ("L", lambda: Image.new("L", (20, 10), 128)),
        ("RGBA", lambda: Image.new("RGBA", (20, 10), (0, 0, 0, 0))),
        ("CMYK", lambda: Image.new("CMYK", (20, 10), (0, 255, 0, 0))),
        ("I;16", lambda: Image.fromarray(np.full((10, 20), 65535, dtype=np.uint16))),
        ("P", lambda: Image.new("P", (20, 10), 3)),
    ],
)
def test_to_rgb_handles_modes(mode, make):
    rgb = to_rgb(make())
    assert rgb.mode == "RGB" and rgb.size == (20, 10)
    if mode == "RGBA":  # fully transparent -> the white background
        assert rgb.getpixel((0, 0)) == (255, 255, 255)
    if mode == "I;16":  # 16-bit full scale -> 8-bit full scale, not clipped garbage
        assert rgb.getpixel((0, 0)) == (255, 255, 255)


def _encoded(image: Image.Image, format: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **save)
    return buffer.getvalue()


def tricky_photos() -> dict[str, bytes]:
    """Valid photos that Pillow's own `convert("RGB")` gets wrong, as files a user would upload."""
    ramp = np.tile(np.linspace(0, 65535, 48), (32, 1)).astype(np.uint16)
    rgba = Image.new("RGBA", (48, 32), (0, 0, 255, 0))  # transparent blue: must become white
    rgba.paste((200, 30, 40, 255), (10, 8, 30, 24))
    palette = rgba.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.info["transparency"] = palette.getpixel((0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    wide = Image.new("RGB", (48, 32), "white")
    wide.paste((20, 120, 200), (0, 0, 12, 32))  # a blue band on the left: on top once upright
    return {
        "I;16": _encoded(Image.fromarray(ramp), "PNG"),
        "I": _encoded(Image.fromarray(ramp.astype(np.int32)), "TIFF"),
        "F": _encoded(Image.fromarray(ramp.astype(np.float32) / 65535), "TIFF"),
        "CMYK": _encoded(Image.new("CMYK", (48, 32), (0, 255, 255, 0)), "JPEG", quality=95),
        "P+transparency": _encoded(palette, "PNG"),
        "LA": _encoded(rgba.convert("LA"), "PNG"),
        "EXIF-rotated": _encoded(wide, "JPEG", quality=95, exif=exif),
    }


@pytest.mark.parametrize("kind", list(tricky_photos()))
def test_dataset_building_and_the_processor_read_photos_alike(kind):
    """The dataset builder keeps a copy of `to_rgb` (it imports no model code): the same pixels as
    the model's, and a built dataset image (JPEG q90) is the photo the processor loads."""
    data = tricky_photos()[kind]
    loaded = load_image(data)
    assert loaded.mode == "RGB"
    assert np.array_equal(
        np.asarray(dataset_build.to_rgb(Image.open(io.BytesIO(data)))), np.asarray(loaded)
    )
    built = np.asarray(Image.open(io.BytesIO(process_image(data, max_side=384))), dtype=float)
    assert built.shape == np.asarray(loaded).shape
    assert np.abs(built - np.asarray(loaded, dtype=float)).mean() < 3  # JPEG q90 rounding only
    if kind == "EXIF-rotated":
        assert loaded.size == (32, 48) and loaded.getpixel((16, 2))[2] > 150  # upright: blue on top
    if kind in ("P+transparency", "LA"):
        assert loaded.getpixel((0, 0)) == (255, 255, 255)  # transparency over white
    if kind in ("I;16", "I", "F"):  # the full 16-bit range scaled to 0-255, not clipped to white
        row = np.asarray(loaded)[0, :, 0].astype(float)
        assert row[0] <= 1 and row[-1] >= 254 and np.allclose(row, np.linspace(0, 255, 48), atol=2)


def test_load_image_refuses_bad_files_with_their_name(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a photo")
    for path, message in (("empty.jpg", "empty.jpg is empty"), ("notes.txt", "notes.txt is not an image"),
                          ("missing.jpg", "missing.jpg not found")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            load_image(tmp_path / path)
    assert ProductImageProcessor.load_image is load_image  # what saved models expose to the app


def test_save_load_round_trip(tmp_path):
    processor = ProductImageProcessor(
        image_size=40, image_mean=(0.5, 0.4, 0.3), image_std=(0.2, 0.2, 0.2)
    )
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").exists()
    loaded = ProductImageProcessor.from_pretrained(tmp_path)
    image = Image.new("RGB", (30, 50), (10, 200, 30))
    assert torch.equal(processor(image)["pixel_values"], loaded(image)["pixel_values"])


def test_from_timm_uses_backbone_normalisation():
    model = create_backbone("test_vit")
    processor = ProductImageProcessor.from_timm(model, image_size=32)
    config = timm.data.resolve_model_data_config(model)
    assert processor.image_size == 32
    assert processor.image_mean == list(config["mean"]) and processor.image_std == list(
        config["std"]
    )


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown timm backbone 'resnet5O'"):
        create_backbone("resnet5O")


def test_sized_backbone_returns_the_kwargs_it_was_built_with():
    vit, kwargs = create_sized_backbone("test_vit", 48, drop_path_rate=0.1)
    assert kwargs == {"drop_path_rate": 0.1, "img_size": 48}
    assert tuple(vit.patch_embed.img_size) == (48, 48)
    _, kwargs = create_sized_backbone("test_resnet", 48, drop_path_rate=0.1)
    assert kwargs == {"drop_path_rate": 0.1}  # a CNN takes any size and has no img_size
    with pytest.raises(TypeError, match="no_such_argument"):  # only img_size is retried without
        create_sized_backbone("test_resnet", 48, no_such_argument=1)


def test_pretrained_path_really_loads_given_weights(tmp_path):
    source = timm.create_model("test_resnet", pretrained=False)
    torch.nn.init.constant_(source.conv1[0].weight, 0.125)
    from safetensors.torch import save_file

    save_file(source.state_dict(), tmp_path / "model.safetensors")
    backbone = create_backbone("test_resnet")
    assert not torch.allclose(backbone.conv1[0].weight, torch.tensor(0.125))
    source = load_backbone_weights(backbone, "test_resnet", str(tmp_path))  # folder route
    assert source["source"] == "file" and source["path"] == str(tmp_path / "model.safetensors")
    assert torch.allclose(backbone.conv1[0].weight, torch.tensor(0.125))
    other = create_backbone("test_resnet")
    assert load_backbone_weights(
        other, "test_resnet", str(tmp_path / "model.safetensors")
    )  # file route
    for a, b in zip(backbone.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert load_backbone_weights(create_backbone("test_resnet"), "test_resnet", "false") is None


def test_pretrained_path_can_be_a_trained_model_of_this_project(tmp_path):
    """A caption model's encoder (or a rating model's backbone) seeds another model's backbone."""
    from safetensors.torch import save_file

    from modeling import (
        ProductCaptionConfig,
        ProductCaptionModel,
        ProductRatingConfig,
        ProductRatingModel,
    )

    caption = ProductCaptionModel(
        ProductCaptionConfig(encoder_name="test_resnet", image_size=32, vocab_size=10)
    )
    torch.nn.init.constant_(caption.encoder.conv1[0].weight, 0.25)
    caption.save_pretrained(tmp_path / "caption")
    rating = ProductRatingModel(ProductRatingConfig(backbone="test_resnet", image_size=32))
    torch.nn.init.constant_(rating.backbone.conv1[0].weight, -0.5)
    rating.save_pretrained(tmp_path / "rating")

    for folder, source in (("caption", caption.encoder), ("rating", rating.backbone)):
        backbone = create_backbone("test_resnet")
        assert load_backbone_weights(backbone, "test_resnet", str(tmp_path / folder)) is not None
        for a, b in zip(backbone.state_dict().values(), source.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    # weights of another model are refused, not loaded as "adapted" random weights
    with pytest.raises(ValueError, match="does not hold 'resnet10t' weights"):
        load_backbone_weights(create_backbone("resnet10t"), "resnet10t", str(tmp_path / "caption"))
    save_file(create_backbone("test_vit").state_dict(), tmp_path / "vit.safetensors")
    with pytest.raises(ValueError, match="does not hold 'test_resnet' weights"):
        load_backbone_weights(
            create_backbone("test_resnet"), "test_resnet", tmp_path / "vit.safetensors"
        )


def test_parse_pretrained_errors(tmp_path):
    assert parse_pretrained("TRUE") is True and parse_pretrained("false") is False
    assert parse_pretrained("PyPI") == "pypi"
    with pytest.raises(FileNotFoundError, match="not found"):
        parse_pretrained(str(tmp_path / "nope.safetensors"))
    with pytest.raises(FileNotFoundError, match="no timm weights"):
        parse_pretrained(str(tmp_path))


def _striped(width: int, height: int) -> Image.Image:
    """A photo with fine detail, which shrinking blurs (a flat colour would not change)."""
    array = np.zeros((height, width, 3), np.uint8)
    array[:, ::2] = (200, 30, 30)
    array[::3, :] = (20, 20, 220)
    return Image.fromarray(array)


def test_a_larger_photo_is_shrunk_to_the_training_resolution(tmp_path):
    processor = ProductImageProcessor(image_size=48, training_resolution=24)
    processor.save_pretrained(tmp_path)
    loaded = ProductImageProcessor.from_pretrained(tmp_path)
    assert loaded.training_resolution == 24 and loaded.do_match_training_resolution
    large = _striped(96, 64)
    shrunk = large.resize((24, 16), Image.Resampling.LANCZOS)  # what the training photos look like
    as_shrunk = ProductImageProcessor(image_size=48)(shrunk)["pixel_values"]
    assert torch.equal(loaded(large)["pixel_values"], as_shrunk)
    assert large.size == (96, 64)  # the caller's photo is left alone
    as_it_comes = ProductImageProcessor(image_size=48)(large)["pixel_values"]
    off = loaded(large, do_match_training_resolution=False)["pixel_values"]
    assert torch.equal(off, as_it_comes) and not torch.equal(off, as_shrunk)
    kept_off = ProductImageProcessor.from_pretrained(tmp_path, do_match_training_resolution=False)
    assert torch.equal(kept_off(large)["pixel_values"], as_it_comes)
    small = _striped(20, 12)  # smaller than the training photos: not enlarged twice
    assert torch.equal(loaded(small)["pixel_values"], kept_off(small)["pixel_values"])


def test_an_older_processor_folder_reads_photos_as_before(tmp_path):
    """A folder saved before `training_resolution` existed: photos as they come."""
    old = {
        "image_processor_type": "ProductImageProcessor",
        "image_size": 48,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "interpolation": "bicubic",
        "train_crop_scale": [0.8, 1.0],
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(old))
    loaded = ProductImageProcessor.from_pretrained(tmp_path)
    assert loaded.training_resolution is None
    large = _striped(300, 200)
    expected = ProductImageProcessor(image_size=48, image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
    assert torch.equal(loaded(large)["pixel_values"], expected(large)["pixel_values"])


def test_training_resolution_must_be_positive():
    with pytest.raises(ValueError, match="training_resolution"):
        ProductImageProcessor(training_resolution=0)
