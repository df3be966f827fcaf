import json
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from model_cards import PublishError, update_model_card, write_model_card
from model_cards.hub import hub_call

from .conftest import REPO_ROOT


def _model_dir(tmp_path, results):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "eval_results.json").write_text(json.dumps(results))
    (folder / "loss_curves.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return folder


def _metrics(card: ModelCard) -> dict:
    return {r.metric_type: r.metric_value for r in card.data.eval_results}


def test_rating_card_carries_eval_results_and_synthetic_warning(tmp_path, tiny_synthetic):
    results = {"mae": 0.31, "rmse": 0.42, "r2": 0.71, "baseline_mae": 0.74, "num_samples": 8}
    folder = _model_dir(tmp_path, results)
    write_model_card(
        folder,
        task="rating",
        dataset=tiny_synthetic,
        backbone="resnet50",
        command="python train_rating.py --dataset d",
        hyperparameters={"learning_rate": 0.001},
    )
    card = ModelCard.load(folder / "README.md")
    assert _metrics(card) == {"mae": 0.31, "rmse": 0.42, "r2": 0.71}
    assert card.data.eval_results[0].dataset_split == "test"
    assert "trained on synthetic data" in card.text
    assert "![loss_curves.png](loss_curves.png)" in card.text
    assert "| MAE (lower is better) | **0.31** | 0.74 |" in card.text
    assert "python train_rating.py --dataset d" in card.text
    assert "best achievable R^2 on this data is" in card.text


def test_update_card_replaces_metrics_once(tmp_path, tiny_synthetic):
    folder = _model_dir(
        tmp_path, {"bleu": 40.0, "word_overlap": 0.5, "num_samples": 4, "baseline_bleu": 3.0}
    )
    write_model_card(
        folder,
        task="caption",
        dataset=tiny_synthetic,
        backbone="vit_small_patch16_224",
        command="accelerate launch train_caption.py",
        hyperparameters={},
        extra={"frozen": True, "attention": True},
    )
    new = {
        "bleu": 61.5,
        "word_overlap": 0.8,
        "jaccard": 0.7,
        "num_samples": 6,
        "baseline_bleu": 3.0,
    }
    update_model_card(folder, new, task="caption", dataset=tiny_synthetic, split="validation")
    card = ModelCard.load(folder / "README.md")
    assert _metrics(card) == {"bleu": 61.5, "word_overlap": 0.8, "jaccard": 0.7}
    assert card.data.eval_results[0].dataset_split == "validation"
    assert (
        card.text.count("<!-- metrics:start -->") == 1
        and "| BLEU-4 (higher is better) | **61.5** | 3 |" in card.text
    )
    assert "40" not in card.text.split("<!-- metrics:start -->")[1].split("<!-- metrics:end -->")[0]


def test_hub_failures_are_one_clear_error():
    def offline():
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    with pytest.raises(
        PublishError, match="could not upload x: Failed to resolve 'huggingface.co'"
    ):
        hub_call("upload x", offline)


@pytest.mark.slow
def test_publish_space_without_network_fails_cleanly(tmp_path):
    model = tmp_path / "rating"
    model.mkdir()
    (model / "config.json").write_text("{}")
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_cards",
            "publish-space",
            "--rating_model",
            str(model),
            "--space_id",
            "me/demo",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )
    if not (REPO_ROOT / "app.py").exists():
        assert "app.py" in done.stderr
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_dry_run_space_folder_holds_what_the_space_needs(tmp_path):
    from huggingface_hub import SpaceCard

    from model_cards import publish_space

    model = tmp_path / "caption"
    (model / "checkpoints" / "epoch_1").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "checkpoints" / "epoch_1" / "model.safetensors").write_bytes(b"old")
    folder = publish_space(
        rating_model="me/fashion-rating",
        caption_model=str(model),
        space_id="me/demo",
        dataset_id="me/amazon-fashion",
        output=tmp_path / "space",
        dry_run=True,
    )
    assert (folder / "app.py").read_text() == (REPO_ROOT / "app.py").read_text()
    requirements = (folder / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} >= {"gradio", "transformers", "timm", "torch"}
    card = SpaceCard.load(folder / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.models == ["me/fashion-rating"] and card.data.datasets == ["me/amazon-fashion"]
    assert json.loads((folder / "space_variables.json").read_text()) == {
        "RATING_MODEL": "me/fashion-rating"
    }
    assert (folder / "models" / "caption" / "model.safetensors").read_bytes() == b"weights"
    assert not (
        folder / "models" / "caption" / "checkpoints"
    ).exists()  # training leftovers stay home


def _amazon_dataset(tmp_path) -> Path:
    """A dataset folder with the build report `python -m hf_dataset amazon` writes (the card reads
    nothing else of it)."""
    folder = tmp_path / "amazon"
    folder.mkdir()
    report = {
        "source": "amazon",
        "metadata": "meta_Amazon_Fashion.jsonl.gz",
        "filters": {"images": "first", "min_ratings": 10, "max_products": None},
        "image": {"max_side": 384, "format": "JPEG q90", "max_pixels": 89478485},
        "selected": {"products": 210, "images": 210},
        "dropped_records": {"below_min_ratings": 303, "no_image": 1},
        "dropped_images": {"http_404": 2, "timeout": 1},
        "kept": {"train": 140, "validation": 45, "test": 22, "total": 207},
    }
    (folder / "build_report.json").write_text(json.dumps(report))
    return folder


def test_rating_card_shows_the_filters_and_drops_of_an_amazon_build(tmp_path):
    dataset = _amazon_dataset(tmp_path)
    folder = _model_dir(tmp_path, {"mae": 0.5, "baseline_mae": 0.7, "num_samples": 22})
    write_model_card(folder, task="rating", dataset=dataset, backbone="resnet50",
                     command="python train_rating.py", hyperparameters={})  # fmt: skip
    text = ModelCard.load(folder / "README.md").text
    assert "`min_ratings=10`" in text and "`images=first`" in text
    assert "Records dropped while building: below_min_ratings 303, no_image 1." in text
    assert "Images dropped while building: http_404 2, timeout 1." in text


def test_the_dataset_id_of_a_local_folder_is_its_name(tmp_path):
    """No build writes a Hub id into its report (`hf_dataset push` uploads the report as built)."""
    dataset = _amazon_dataset(tmp_path)
    report = json.loads((dataset / "build_report.json").read_text())
    (dataset / "build_report.json").write_text(json.dumps({**report, "hub_id": "someone/else"}))
    folder = _model_dir(tmp_path, {"mae": 0.5, "num_samples": 22})
    write_model_card(folder, task="rating", dataset=dataset, backbone="resnet50",
                     command="python train_rating.py", hyperparameters={})  # fmt: skip
    card = ModelCard.load(folder / "README.md")
    assert card.data.eval_results[0].dataset_type == "amazon" and not card.data.datasets


def test_baselines_are_the_flat_baseline_keys_of_eval_results(tmp_path, tiny_synthetic):
    """`baseline_<metric>` (docs/DESIGN.md, metric keys) is the one place a baseline is read from;
    a nested `baseline` dict is no format of eval_results.json."""
    results = {"bleu": 40.0, "jaccard": 0.5, "baseline_jaccard": 0.25, "num_samples": 4,
               "baseline": {"bleu": 3.0}}  # fmt: skip
    folder = _model_dir(tmp_path, results)
    write_model_card(folder, task="caption", dataset=tiny_synthetic, backbone="test_vit",
                     command="python train_caption.py", hyperparameters={},
                     extra={"frozen": True, "attention": True})  # fmt: skip
    text = ModelCard.load(folder / "README.md").text
    assert "| BLEU-4 (higher is better) | **40** | - |" in text
    assert "| Jaccard (higher is better) | **0.5** | 0.25 |" in text
