import json
import subprocess
import sys

import datasets
import numpy as np
import pytest

from hf_dataset import SPLITS, split_for, synthetic
from hf_dataset.build import BuildError

from .conftest import REPO_ROOT


def test_schema_and_dtypes(tiny_synthetic):
    dataset = datasets.load_from_disk(str(tiny_synthetic))
    assert set(dataset) == set(SPLITS)
    features = dataset["train"].features
    assert isinstance(features["image"], datasets.Image)
    expected = {
        "product_id": "string",
        "caption": "string",
        "rating": "float32",
        "rating_count": "int32",
    }
    for name, dtype in expected.items():
        assert features[name].dtype == dtype, name
    for name in synthetic.EXTRA_COLUMNS:
        assert features[name].dtype == "string", name
    example = dataset["train"][0]
    assert example["image"].mode == "RGB" and max(example["image"].size) == 64
    assert 1.0 <= example["rating"] <= 5.0 and example["rating_count"] >= 1
    assert sum(len(dataset[s]) for s in SPLITS) == 60


def test_caption_is_determined_by_attributes(tiny_synthetic):
    split = datasets.load_from_disk(str(tiny_synthetic))["train"]
    for row in split.remove_columns("image"):
        assert row["caption"] == synthetic.caption_for(
            row["colour"], row["pattern"], row["garment"], row["detail"]
        )
        assert len(row["caption"].split()) >= 5


def test_card_and_report(tiny_synthetic):
    report = json.loads((tiny_synthetic / "build_report.json").read_text())
    assert report["kept"]["total"] == 60
    assert sum(report["kept"][s] for s in SPLITS) == 60
    assert report["rating_model"]["noise_std"] == synthetic.NOISE_STD
    assert 0.5 < report["oracle_r2"] < 1.0
    from huggingface_hub import DatasetCard

    parsed = DatasetCard.load(tiny_synthetic / "README.md")
    info = parsed.data.to_dict()["dataset_info"]
    assert {s["name"]: s["num_examples"] for s in info["splits"]} == {
        s: report["kept"][s] for s in SPLITS
    }
    assert {f["name"] for f in info["features"]} >= {
        "product_id",
        "image",
        "caption",
        "rating",
        "rating_count",
    }


def test_same_seed_same_bytes(tmp_path):
    a = synthetic.build(tmp_path / "a", num_products=12, seed=3, image_size=64)
    b = synthetic.build(tmp_path / "b", num_products=12, seed=3, image_size=64)
    c = synthetic.build(tmp_path / "c", num_products=12, seed=4, image_size=64)
    for split in SPLITS:
        image = datasets.Image(decode=False)
        bytes_a = [x["bytes"] for x in a[split].cast_column("image", image)["image"]]
        bytes_b = [x["bytes"] for x in b[split].cast_column("image", image)["image"]]
        assert bytes_a == bytes_b
        assert a[split]["rating"] == b[split]["rating"]
    all_a = {
        x["bytes"]
        for s in SPLITS
        for x in a[s].cast_column("image", datasets.Image(decode=False))["image"]
    }
    all_c = {
        x["bytes"]
        for s in SPLITS
        for x in c[s].cast_column("image", datasets.Image(decode=False))["image"]
    }
    assert not all_a & all_c


def test_no_product_in_two_splits_and_stable_growth(tmp_path):
    small = synthetic.build(tmp_path / "n", num_products=40, seed=1, image_size=32)
    large = synthetic.build(tmp_path / "2n", num_products=80, seed=1, image_size=32)
    for dataset in (small, large):
        seen = [set(dataset[s]["product_id"]) for s in SPLITS]
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
        for split in SPLITS:
            assert all(split_for(pid) == split for pid in dataset[split]["product_id"])
    for split in SPLITS:
        ids_small = set(small[split]["product_id"])
        assert ids_small <= set(large[split]["product_id"])
        # the same products, with the same ratings
        rows_large = {r["product_id"]: r["rating"] for r in large[split].remove_columns("image")}
        for row in small[split].remove_columns("image"):
            assert rows_large[row["product_id"]] == row["rating"]


def test_split_fractions_are_70_20_10():
    counts = {s: 0 for s in SPLITS}
    for i in range(20000):
        counts[split_for(f"product-{i}")] += 1
    assert abs(counts["train"] / 20000 - 0.7) < 0.015
    assert abs(counts["validation"] / 20000 - 0.2) < 0.015
    assert abs(counts["test"] / 20000 - 0.1) < 0.015


def test_oracle_is_the_conditional_mean():
    """expected_rating is E[clip(s + noise)]: check it against a Monte Carlo estimate."""
    rng = np.random.default_rng(0)
    for signal in (0.8, 3.0, 4.9, 5.4):
        draws = np.clip(signal + rng.normal(0, synthetic.NOISE_STD, 200_000), 1, 5)
        assert abs(synthetic.expected_rating(signal) - draws.mean()) < 3e-3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_products": 0}, "--num_products must be a positive integer"),
        ({"num_products": -5}, "--num_products must be a positive integer"),
        ({"image_size": 8}, "--image_size must be between"),
        ({"seed": -1}, "--seed must be a non-negative integer"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(BuildError, match=message):
        synthetic.build(tmp_path / "out", **{"num_products": 5, **kwargs})
    assert not (tmp_path / "out").exists()


def test_non_empty_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(BuildError, match="not empty; pass --overwrite"):
        synthetic.build(out, num_products=5, image_size=32)
    assert (out / "keep.txt").read_text() == "precious"
    synthetic.build(out, num_products=5, image_size=32, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "dataset_dict.json").exists()


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic.draw_product

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "draw_product", failing)
    with pytest.raises(Exception, match="disk on fire|generating the dataset"):
        synthetic.build(tmp_path / "out", num_products=10, image_size=32)
    assert list(tmp_path.iterdir()) == []  # no output, no staging folder, no cache


@pytest.mark.slow
def test_cli(tmp_path):
    out = tmp_path / "cli"
    run = lambda *extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "hf_dataset", "synthetic", "--output", str(out), *extra],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    ok = run("--num-products", "8", "--image-size", "32")
    assert ok.returncode == 0, ok.stderr
    assert "oracle R^2" in ok.stdout
    again = run("--num-products", "8")
    assert (
        again.returncode == 2
        and "error: output folder" in again.stderr
        and "Traceback" not in again.stderr
    )
    bad = run("--num-products", "0", "--overwrite")
    assert bad.returncode == 2 and "--num_products must be a positive integer" in bad.stderr
    assert (out / "dataset_dict.json").exists()  # the earlier good dataset survived both failures


def test_cli_analyses_the_dataset_into_its_card_and_pushes(tmp_path, capsys, monkeypatch):
    """The synthetic source gets what every source gets: the report, the analysis embedded into the
    card, and --push-to-hub (offline here: one line, and the dataset it was given stays whole)."""
    from hf_dataset.__main__ import main
    from hf_dataset.analyze import CARD_START

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "synthetic"
    argv = ["synthetic", "--output", str(out), "--num-products", "12", "--image-size", "32"]
    assert main([*argv, "--push-to-hub", "someone/synthetic", "--private"]) == 2
    printed, error = capsys.readouterr()
    assert "oracle R^2" in printed and "baseline rating: train mean" in printed
    assert (
        error.strip()
        .splitlines()[-1]
        .startswith("error: could not push to the Hub dataset someone/synthetic")
    )
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert sum(s["num_rows"] for s in analysis["splits"].values()) == 12
    assert CARD_START in (out / "README.md").read_text()
    assert sum(len(split) for split in datasets.load_from_disk(str(out)).values()) == 12
