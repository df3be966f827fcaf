"""docs/studies/real_ratings.py: the grouped folds, the bootstrap scores, and a `--quick` run."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metrics import load_metric

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "docs" / "studies" / "real_ratings.py"
DATA = ROOT / ".." / "shared" / "data" / "amazon_in_tshirts"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("real_ratings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def titles(num_groups=40, seed=0) -> np.ndarray:
    """Titles repeated 1-6 times, shuffled: like the t-shirts' listings."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"title {g}" for g in range(num_groups)], rng.integers(1, 7, num_groups))
    return rng.permutation(groups)


def test_grouped_folds_keep_each_title_in_one_fold(study):
    groups = titles()
    folds = study.grouped_folds(groups, 5, seed=3)
    for title in set(groups):
        assert len(set(folds[groups == title])) == 1, title
    sizes = np.bincount(folds, minlength=5)
    assert sizes.sum() == len(groups) and sizes.max() - sizes.min() <= 6  # within one title
    assert np.array_equal(folds, study.grouped_folds(groups, 5, seed=3))  # deterministic
    assert not np.array_equal(folds, study.grouped_folds(groups, 5, seed=4))


def test_grouped_holdout_takes_whole_titles(study):
    groups = titles()
    held = study.grouped_holdout(groups, 0.2, seed=1)
    for title in set(groups):
        assert len(set(held[groups == title])) == 1, title
    assert 0.2 * len(groups) <= held.sum() < 0.2 * len(groups) + 6


def test_too_few_titles_for_the_folds(study):
    with pytest.raises(study.UserError, match="too few"):
        study.grouped_folds(["a", "a", "b"], 3, seed=0)


def test_bootstrap_scores_match_the_rating_metric(study):
    rng = np.random.default_rng(0)
    y, p = rng.uniform(1, 5, 50), rng.uniform(1, 5, 50)
    expected = load_metric("rating").compute(predictions=p, references=y)
    single = study.scores(y, p)
    stacked = study.scores(np.stack([y, y[::-1]]), np.stack([p, p[::-1]]))  # a resample per row
    for name in ("mae", "rmse", "r2"):
        assert single[name] == pytest.approx(expected[name])
        assert stacked[name] == pytest.approx([expected[name]] * 2)
    r = np.corrcoef(y, p)[0, 1]
    assert study.correlation(np.stack([y, y]), np.stack([p, 2 * p + 1])) == pytest.approx([r, r])


def test_verdict(study):
    assert study.verdict("mae", -0.05, 0.01) == "no gain"
    assert study.verdict("mae", -0.05, -0.01) == "gain"
    assert study.verdict("rmse", 0.01, 0.05) == "worse"
    assert study.verdict("r2", 0.01, 0.05) == "gain"
    assert study.verdict("r2", -0.05, -0.01) == "worse"


def test_missing_data_folder_is_one_clear_error(study, tmp_path):
    with pytest.raises(study.UserError, match="metadata.csv not found"):
        study.main(["--data_dir", str(tmp_path), "--out", str(tmp_path / "out.json")])


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"the real-ratings data is not at {DATA}")
def test_quick_study_writes_sane_results(tmp_path):
    out = tmp_path / "real_ratings.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "MAE - baseline" in run.stdout  # the table
    results = json.loads(out.read_text())
    assert results["settings"]["quick"] and results["machine"]["cpu"]
    assert results["runtime_s"] > 0 and "--quick" in results["command"]

    # out-of-fold: every product predicted once, in range, and no title in two folds
    predictions = results["predictions"]
    n = results["data"]["products"]
    assert n == len(predictions["product_id"]) == sum(results["data"]["fold_sizes"])
    with open(DATA / "metadata.csv", newline="") as f:
        title_of = {row["product_id"]: row["caption"] for row in csv.DictReader(f)}
    fold_of_title = {}
    for product, fold in zip(predictions["product_id"], predictions["fold"], strict=True):
        assert fold_of_title.setdefault(title_of[product], fold) == fold, title_of[product]
    for name in ("baseline", "frozen", "frozen_weighted", "finetuned", "finetuned_weighted"):
        assert all(1.0 <= p <= 5.0 for p in predictions[name]), name

    summary = results["results"]["all"]
    assert summary["products"] == n
    variants = summary["variants"]
    assert variants["baseline"]["mae"]["estimate"] > 0
    for name, entry in variants.items():
        for metric in ("mae", "rmse", "r2"):
            low, high = entry[metric]["ci95"]
            assert low <= entry[metric]["estimate"] <= high, (name, metric)
        for band in entry["interval"].values():
            assert 0.0 <= band["coverage"] <= 1.0 and 0.0 <= band["width"] <= 4.0
        if name != "baseline":
            mae = entry["vs_baseline"]["mae"]
            expected = entry["mae"]["estimate"] - variants["baseline"]["mae"]["estimate"]
            assert mae["difference"] == pytest.approx(expected)
            assert mae["verdict"] in ("gain", "no gain", "worse")
            assert set(entry["interval"]) == {"absolute", "quantile", "chosen"}
            assert -1.0 <= entry["pearson_r"]["estimate"] <= 1.0
    established = results["results"]["rating_count_ge_10"]
    assert 0 < established["products"] < n
