"""The rating model (tiny timm backbones, 32-64 px, CPU)."""

import importlib.util
import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoConfig, AutoImageProcessor, AutoModel

import evaluate_models
import train_rating
from modeling import ProductImageProcessor, ProductRatingConfig, ProductRatingModel
from training import intervals
from training.script import UserError

from .conftest import tensorboard_scalars


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine the threads wait on each other
    (BENCHMARKS.md)."""
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


def test_frozen_backbone_keeps_weights_and_statistics_and_survives_a_reload(tmp_path):
    model = tiny_model(freeze_backbone=True)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head = model.head_out.weight.clone()
    train_a_little(model)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, before[key]), key  # weights and BatchNorm running stats
    assert not torch.equal(model.head_out.weight, head)
    model.save_pretrained(tmp_path)
    reloaded = ProductRatingModel.from_pretrained(tmp_path).train()
    assert not any(p.requires_grad for p in reloaded.backbone.parameters())
    assert not reloaded.backbone.training and reloaded.head_out.weight.requires_grad


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


def test_config_is_strict():
    from huggingface_hub.errors import StrictDataclassFieldValidationError

    with pytest.raises(StrictDataclassFieldValidationError, match="freeze_backbone"):
        ProductRatingConfig(freeze_backbone="false")  # a truthy string would freeze the backbone
    config = ProductRatingConfig()
    with pytest.raises(StrictDataclassFieldValidationError, match="head_hidden_size"):
        config.head_hidden_size = "256"
    # ints are still welcome where a float is expected, and saved as floats
    assert ProductRatingConfig(min_rating=1, max_rating=5, dropout=0).to_dict()["min_rating"] == 1.0


def test_a_folder_saved_before_the_config_was_strict_still_loads(tmp_path):
    model = train_a_little(tiny_model())
    model.save_pretrained(tmp_path)
    # config.json as the first version of this config wrote it: neither freeze_backbone nor
    # pretrained_weights existed, and transformers 4 named the dtype torch_dtype
    old = {
        "architectures": ["ProductRatingModel"],
        "auto_map": {
            "AutoConfig": "configuration_rating.ProductRatingConfig",
            "AutoModel": "modeling_rating.ProductRatingModel",
        },
        "backbone": "test_resnet", "drop_path_rate": 0.0, "dropout": 0.2, "head_hidden_size": 16,
        "huber_delta": 1.0, "image_size": 32, "initializer_range": 0.02, "max_rating": 5.0,
        "min_rating": 1.0, "model_type": "product_rating", "rating_prior": 3.0,
        "torch_dtype": "float32", "transformers_version": "4.57.1",
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert not loaded.config.freeze_backbone and loaded.config.pretrained_weights is None
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(pixels).predictions, loaded(pixels).predictions)
        assert loaded(pixels).interval is None and loaded(pixels).bounds is None  # no interval


# --- the interval ----------------------------------------------------------------------------------


def test_conformal_margin_is_the_finite_sample_quantile():
    scores = np.arange(1, 20, dtype=float)  # 19 scores: ceil(20 * 0.9) = 18th smallest
    assert intervals.conformal_margin(scores, 0.9) == 18.0
    assert intervals.conformal_margin(scores[:5], 0.9) == float("inf")  # too few for 90%


def test_calibration_covers_new_products_and_keeps_the_narrower_interval():
    """Noise whose size depends on the photo: the quantile head's per-photo interval (here its
    true quantiles) must be kept, cover ~90% of fresh products and be narrower than rating +- m."""
    rng = np.random.default_rng(0)

    def products(n):
        ratings = rng.uniform(2, 4, n)
        scale = rng.choice([0.05, 0.6], n)  # half the photos are easy, half hard
        labels = ratings + rng.normal(0, 1, n) * scale
        bounds = np.stack([ratings - 1.645 * scale, ratings + 1.645 * scale], axis=1)
        return labels, ratings, bounds

    calibration = intervals.calibrate(*products(2_000), coverage=0.9, limits=(1.0, 5.0))
    assert calibration["chosen"]["method"] == "quantile"
    assert calibration["quantile"]["width"] < 0.8 * calibration["absolute"]["width"]
    test = intervals.evaluate(calibration, *products(20_000), limits=(1.0, 5.0))
    for method in ("absolute", "quantile"):
        assert 0.87 < test[method]["coverage"] < 0.93, test


def test_the_model_returns_the_calibrated_interval_within_the_range():
    model = tiny_model(quantile_levels=[0.05, 0.95])
    model.config.interval = {"method": "quantile", "coverage": 0.9, "margin": 0.25}
    with torch.no_grad():
        out = model.eval()(torch.randn(3, 3, 32, 32) * 50)
    low, high = out.interval.T
    assert torch.allclose(low, (out.bounds[:, 0] - 0.25).clamp(1, 5))
    assert torch.allclose(high, (out.bounds[:, 1] + 0.25).clamp(1, 5))
    assert (low <= out.predictions).all() and (out.predictions <= high).all()
    model.config.interval = {"method": "absolute", "coverage": 0.9, "margin": 0.5}
    with torch.no_grad():
        out = model(torch.randn(3, 3, 32, 32))
    assert torch.allclose(
        out.interval, torch.stack([out.predictions - 0.5, out.predictions + 0.5], 1)
    )


def test_the_quantile_loss_sends_no_gradient_into_the_rating():
    model = tiny_model(quantile_levels=[0.05, 0.95]).train()
    pixels, labels = torch.randn(4, 3, 32, 32), torch.tensor([1.0, 2.0, 4.0, 5.0])
    bounds = model(pixels).bounds
    torch.autograd.grad(bounds.sum(), model.head_spread.weight)  # the head itself learns from it
    rating_weights = [p for n, p in model.named_parameters() if not n.startswith("head_spread")]
    grads = torch.autograd.grad(model(pixels).bounds.sum(), rating_weights, allow_unused=True)
    assert all(g is None for g in grads)
    assert model(pixels, labels=labels).loss > 0


def test_interval_config_is_checked():
    with pytest.raises(ValueError, match="needs quantile_levels"):
        ProductRatingConfig(interval={"method": "quantile", "coverage": 0.9, "margin": 0.1})
    with pytest.raises(ValueError, match="quantile_levels"):
        ProductRatingConfig(quantile_levels=[0.9, 0.1])


# --- why this rating -------------------------------------------------------------------------------


def test_rating_map_is_each_patch_s_rating_change_aligned_with_the_input():
    model = train_a_little(tiny_model(), size=48)
    pixels = torch.randn(3, 3, 48, 48)
    maps = model.rating_map(pixels, patch=16)  # a 3 x 3 grid of patches
    assert maps.shape == (3, 48, 48) and maps.min() >= 0
    assert maps.amax(dim=(1, 2)).allclose(torch.ones(3))
    assert torch.allclose(model.rating_map(pixels[1:2], patch=16)[0], maps[1])  # its own map

    # by hand: photo 0 with each patch in turn painted in its top-left colour
    with torch.no_grad():
        rating = model(pixels[:1]).predictions
        changes = torch.zeros(3, 3)
        for row, col in itertools.product(range(3), range(3)):
            painted = pixels[:1].clone()
            painted[0, :, 16 * row : 16 * row + 16, 16 * col : 16 * col + 16] = pixels[0, :, :1, :1]
            changes[row, col] = (model(painted).predictions - rating).abs().item()
    smooth = torch.nn.functional.interpolate(changes[None, None], size=(48, 48), mode="bilinear")
    assert torch.allclose(maps[0], smooth[0, 0] / smooth.max(), atol=1e-5)
    assert not any(p.grad is not None for p in model.parameters())


def test_config_validation():
    with pytest.raises(ValueError, match="rating_prior"):
        ProductRatingConfig(rating_prior=5.0)
    with pytest.raises(ValueError, match="huber_delta"):
        ProductRatingConfig(huber_delta=0)
    with pytest.raises(ValueError, match="unknown timm backbone"):
        ProductRatingModel(ProductRatingConfig(backbone="resnet5O"))


def test_backbone_kwargs_are_the_ones_it_was_built_with():
    assert tiny_model("test_vit", drop_path_rate=0.1).backbone_kwargs == {
        "drop_path_rate": 0.1,
        "img_size": 32,
    }
    assert tiny_model("test_resnet").backbone_kwargs == {"drop_path_rate": 0.0}


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


@pytest.mark.slow
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


# --- train_rating.py / evaluate_models.py ----------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_ARGS = [
    "--backbone", "test_resnet", "--pretrained_backbone", "false", "--image_size", "32",
    "--head_hidden_size", "16", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
    "--learning_rate", "3e-3", "--logging_steps", "2", "--disable_tqdm", "true", "--seed", "0",
]  # fmt: skip
SCRIPT_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def train(dataset, output_dir, *extra):
    return train_rating.main(
        ["--dataset", str(dataset), "--output_dir", str(output_dir), *TINY_ARGS, *extra]
    )


def run_script(*args, timeout=300):
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=REPO_ROOT,
        env=SCRIPT_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def trained(tiny_synthetic, tmp_path_factory):
    """One tiny end-to-end run shared by the tests that only read its outputs."""
    output_dir = tmp_path_factory.mktemp("rating")
    results = train(tiny_synthetic, output_dir, "--num_train_epochs", "2")
    return output_dir, results


def test_script_writes_every_output(trained, tiny_synthetic):
    output_dir, results = trained
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "modeling_rating.py",
        "eval_results.json",
        "loss_curves.png",
        "mae_curve.png",
        "test_predicted_vs_true.png",
        "test_residuals.png",
        "test_confusion_matrix.png",
        "test_samples.png",
    ):
        assert (output_dir / name).is_file() and (output_dir / name).stat().st_size > 0, name
    saved = json.loads((output_dir / "eval_results.json").read_text())
    for key in ("mae", "rmse", "r2", "baseline_mae", "num_samples"):
        assert isinstance(saved[key], int | float), key
    assert saved["num_samples"] == results["num_samples"] > 0
    assert 1.0 < saved["train_mean"] < 5.0 and "mae" in saved["validation"]
    assert 0.0 < saved["oracle_r2"] < 1.0  # from the synthetic dataset's build report
    config = json.loads((output_dir / "config.json").read_text())
    assert config["rating_prior"] == pytest.approx(saved["train_mean"])
    photos = datasets.load_from_disk(str(tiny_synthetic))["train"]["image"]
    side = round(statistics.median(max(photo.size) for photo in photos))
    processor = json.loads((output_dir / "preprocessor_config.json").read_text())
    assert processor["training_resolution"] == side
    assert f"The training photos were {side} px" in (output_dir / "README.md").read_text()
    # the interval, calibrated on validation: both methods measured on test, the narrower kept
    assert config["quantile_levels"] == pytest.approx([0.05, 0.95])
    assert config["interval"]["coverage"] == saved["interval_nominal_coverage"] == 0.9
    methods = saved["interval_methods"]
    assert set(methods) == {"absolute", "quantile"}
    kept = min(methods, key=lambda m: methods[m]["validation_width"])
    assert config["interval"]["method"] == saved["interval_method"] == kept
    assert saved["interval_coverage"] == methods[kept]["test_coverage"]
    assert 0.0 <= saved["interval_coverage"] <= 1.0 and saved["interval_width"] > 0


def test_model_card_holds_the_test_metrics(trained):
    from huggingface_hub import ModelCard

    output_dir, results = trained
    card = ModelCard.load(output_dir / "README.md")
    saved = json.loads((output_dir / "eval_results.json").read_text())
    index = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert index == {key: pytest.approx(saved[key]) for key in ("mae", "rmse", "r2")}
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}
    assert (
        "trained on synthetic data" in card.text and "python train_rating.py --dataset" in card.text
    )
    for plot in ("loss_curves.png", "test_predicted_vs_true.png"):
        assert f"]({plot})" in card.text
    covered = f"covered **{saved['interval_coverage']:.1%}** of the products, mean width"
    assert "Each rating comes with a 90% interval" in card.text and covered in card.text


def test_tensorboard_gets_the_loss_and_mae_of_every_epoch(trained):
    output_dir, _ = trained
    logged = tensorboard_scalars(output_dir / "runs")
    checkpoint = max(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    epochs = [h for h in history if "eval_mae" in h]
    assert len(epochs) == 2  # --num_train_epochs 2
    # the best model's final evaluation is logged at the last step too, after the last epoch's
    final = json.loads((output_dir / "eval_results.json").read_text())["validation"]
    for h in epochs:
        at_last_step = h is epochs[-1]
        for key in ("mae", "loss"):
            expected = [h[f"eval_{key}"]] + ([final[key]] if at_last_step else [])
            assert any(logged[f"eval/{key}"][h["step"]] == pytest.approx(v) for v in expected)
    train_losses = {h["step"]: h["loss"] for h in history if "loss" in h}
    assert train_losses and logged["train/loss"] == pytest.approx(train_losses)


def test_a_tracker_that_is_not_installed_is_one_clear_error(tmp_path):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed")
    with pytest.raises(UserError, match=r"--report_to wandb: wandb is not installed"):
        train_rating.parse_args(
            ["--dataset", "unused", "--output_dir", str(tmp_path), "--report_to", "wandb"]
        )
    with pytest.raises(UserError, match="--report_to tensorbored: not a known tracker"):
        train_rating.parse_args(
            ["--dataset", "unused", "--output_dir", str(tmp_path), "--report_to", "tensorbored"]
        )
    *_, training_args = train_rating.parse_args(
        ["--dataset", "unused", "--output_dir", str(tmp_path), "--report_to", "none"]
    )
    assert training_args.report_to == []


def test_push_without_network_is_one_clear_error(trained):
    from model_cards import PublishError, push_model

    output_dir, _ = trained
    with pytest.raises(PublishError, match="could not create the model repo me/rating"):
        push_model(output_dir, "me/rating")


def test_evaluate_models_reproduces_the_training_scores(
    trained, tiny_synthetic, tmp_path, auto_loads
):
    output_dir, results = trained
    out = tmp_path / "eval.json"
    evaluated = evaluate_models.main(
        ["--model", str(output_dir), "--dataset", str(tiny_synthetic), "--output", str(out)]
    )
    assert json.loads(out.read_text())["model_type"] == "product_rating"
    for key in ("mae", "rmse", "r2", "baseline_mae", "num_samples", "interval_coverage",
                "interval_width", "interval_nominal_coverage"):  # fmt: skip
        assert evaluated[key] == pytest.approx(results[key], abs=1e-5), key
    # one path for both families: the Auto classes, with the saved code allowed (auto_map)
    assert {("ProductRatingModel", True), ("ProductImageProcessor", True)} <= set(auto_loads)


def test_normalizing_on_the_device_trains_like_normalizing_in_the_workers(
    trained, tiny_synthetic, tmp_path
):
    """uint8 batches normalised by RatingTrainer (the default) = float batches from the workers."""
    _, on_device = trained
    in_workers = train(
        tiny_synthetic, tmp_path, "--num_train_epochs", "2", "--normalize_on_device", "false"
    )
    for key in ("mae", "rmse", "r2"):
        assert in_workers[key] == pytest.approx(on_device[key], abs=1e-4), key


def test_resume_from_checkpoint(tiny_synthetic, tmp_path):
    train(tiny_synthetic, tmp_path, "--num_train_epochs", "1")
    first = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    assert first, "no checkpoint written"
    with pytest.raises(UserError, match="holds checkpoints"):
        train(tiny_synthetic, tmp_path, "--num_train_epochs", "2")
    train(tiny_synthetic, tmp_path, "--num_train_epochs", "2", "--resume_from_checkpoint", "true")
    state = json.loads(
        (
            max(tmp_path.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            / "trainer_state.json"
        ).read_text()
    )
    assert state["epoch"] == 2
    # the second run continued the first: its epoch-1 evaluation is in the history it loaded
    assert [log["epoch"] for log in state["log_history"] if "eval_mae" in log][:2] == [1, 2]


def test_pretrained_backbone_path_loads_the_given_weights(tmp_path):
    source = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    torch.nn.init.constant_(source.conv1[0].weight, 0.125)
    save_file(source.state_dict(), tmp_path / "weights.safetensors")
    model_args, _, _ = train_rating.parse_args(
        ["--dataset", "unused", "--output_dir", str(tmp_path), *TINY_ARGS,
         "--pretrained_backbone", str(tmp_path / "weights.safetensors")]
    )  # fmt: skip
    model = train_rating.build_model(model_args, train_mean=3.5, log=print)
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    assert model.config.rating_prior == 3.5


def test_rating_count_filter_and_weights(tiny_synthetic):
    args = train_rating.DataArguments(dataset=str(tiny_synthetic), min_rating_count=20)
    splits = train_rating.load_rated_splits(args, log=print)
    counts = splits["train"]["rating_count"]
    assert counts and min(counts) >= 20
    total = sum(len(s) for s in datasets.load_from_disk(str(tiny_synthetic)).values())
    assert sum(len(s) for s in splits.values()) < total
    processor = ProductImageProcessor(image_size=32)
    splits = train_rating.attach_transforms(splits, processor, weight_by_rating_count=True)
    batch = train_rating.collate([splits["train"][i] for i in range(len(splits["train"]))])
    assert batch["pixel_values"].shape == (len(counts), 3, 32, 32)
    assert batch["weights"].mean().item() == pytest.approx(1.0, abs=1e-5)
    assert "weights" not in splits["validation"][0]  # evaluation is never weighted


@pytest.fixture
def unrated(tiny_synthetic, tmp_path):
    # keep_in_memory: the shared fixture folder must not get cache files
    dataset = datasets.load_from_disk(str(tiny_synthetic)).map(
        lambda row: {"rating": None}, keep_in_memory=True
    )
    dataset.save_to_disk(str(tmp_path / "unrated"))
    return tmp_path / "unrated"


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "dataset folder not found"),
        ("unrated", "has no ratings"),
        ("backbone", "unknown timm backbone 'resnet5O'"),
        ("weights", "pretrained backbone weights not found"),
        ("count", "no rated products with 100000 or more ratings"),
    ],
)
def test_clear_errors(case, message, tiny_synthetic, unrated, tmp_path):
    dataset = {"missing": tmp_path / "nope", "unrated": unrated}.get(case, tiny_synthetic)
    extra = {
        "backbone": ["--backbone", "resnet5O"],
        "weights": ["--pretrained_backbone", "nope.pt"],
        "count": ["--min_rating_count", "100000"],
    }
    with pytest.raises(UserError, match=message):
        train(dataset, tmp_path / "out", *extra.get(case, []))


@pytest.mark.slow
def test_command_line_errors_are_one_line(tmp_path):
    result = run_script(
        "train_rating.py", "--dataset", tmp_path / "nope", "--output_dir", tmp_path / "out"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: dataset folder not found: {tmp_path / 'nope'}"


@pytest.mark.slow
def test_accelerate_launch_two_processes(tiny_synthetic, tmp_path):
    # accelerate 1.15's `launch --cpu --num_processes 2` starts ONE process (its simple launcher);
    # two CPU processes need the torchrun launcher (--multi_gpu) with ACCELERATE_USE_CPU=1
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "train_rating.py", "--dataset", str(tiny_synthetic), "--output_dir", str(tmp_path),
         *TINY_ARGS, "--num_train_epochs", "1"],
        cwd=REPO_ROOT, env={**SCRIPT_ENV, "ACCELERATE_USE_CPU": "1"}, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training on 2 processes" in result.stdout  # really distributed
    results = json.loads((tmp_path / "eval_results.json").read_text())
    test_rows = len(datasets.load_from_disk(str(tiny_synthetic))["test"])
    assert results["num_samples"] == test_rows  # gathered from both processes, no duplicates
    assert (tmp_path / "model.safetensors").is_file()


def make_demo_commands(out: Path, *starts: str) -> list[str]:
    """The shell commands `make demo` runs (`make -n`), with OUT=out, that start with `starts`."""
    printed = subprocess.run(
        ["make", "-n", "demo", f"OUT={out}", "SERVE=0"], cwd=REPO_ROOT, capture_output=True,
        text=True, check=True,
    ).stdout.replace("\\\n", " ")  # fmt: skip
    commands = [line.strip() for line in printed.splitlines()]
    return [c for c in commands if any(s in c for s in starts)]


@pytest.mark.slow
def test_the_demo_interval_covers_85_to_95_percent_of_the_test_split(tmp_path):
    """`make demo`'s own dataset and rating training (its commands, read from the Makefile): the
    90% interval, calibrated on validation, covers 85-95% of the test split's products."""
    commands = make_demo_commands(tmp_path, "hf_dataset synthetic", "train_rating.py")
    assert len(commands) == 2, commands
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=REPO_ROOT, env=SCRIPT_ENV,
                              capture_output=True, text=True, timeout=900)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "rating" / "eval_results.json").read_text())
    assert results["interval_nominal_coverage"] == 0.9 and results["num_samples"] > 150
    assert 0.85 <= results["interval_coverage"] <= 0.95, results
    assert results["interval_width"] < 4.0  # narrower than the whole 1-5 range
