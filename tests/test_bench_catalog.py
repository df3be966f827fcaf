"""benchmarks/bench_catalog.py's quick mode: the recipe on 60 catalogue products, phase by phase."""

import pytest

from benchmarks import bench_catalog, bench_train_step


@pytest.mark.slow
def test_the_recipe_phases_add_up_and_carry_their_work(shared_data, tmp_path):
    result = bench_catalog.run(quick=True, keep_in=tmp_path)
    phases = {row["phase"]: row for row in result["phases"]}
    assert list(phases) == [
        "dataset_build", "data_and_model", "feature_cache", "prepare", "train_epochs",
        "validation_per_epoch", "test", "outputs",
    ]  # fmt: skip
    assert sum(row["share"] for row in phases.values()) == pytest.approx(1.0)
    assert all(row["seconds"] >= 0 for row in phases.values())
    rows = result["rows"]
    assert phases["feature_cache"]["photos"] == sum(rows.values()) > 0
    assert phases["test"]["photos"] == 3 * rows["validation"] + rows["test"]
    # the trained stage, the decoder and the head: a training step is more work than a loss
    work = result["gflop_per_photo"]
    assert work["train_step"] > work["validation_loss"] > 0 and work["feature_cache"] > 0
    for phase in ("feature_cache", "train_epochs", "test"):
        assert 0 < phases[phase]["share_of_peak"] < 1.5, phase
    assert "--train_last_blocks" in result["recipe_args"] and 0 <= result["test_bleu"] <= 100

    # the same run's folder read back as a finished `make catalog`'s: the same phases, but the
    # dataset build, which make catalog does apart and does not time
    again = bench_catalog.of_run(tmp_path, quick=True)
    assert [row["phase"] for row in again["phases"]] == list(phases)[1:]
    for row in again["phases"]:
        assert row["seconds"] == phases[row["phase"]]["seconds"], row["phase"]
    assert again["rows"] == rows and again["test_bleu"] == pytest.approx(result["test_bleu"])

    # the training-step benchmark on the same folder and cache: every batch size timed each round
    steps = bench_train_step.run(
        tmp_path / "dataset", tmp_path / "cache", [2, 4], photos=8, rounds=2, quick=True
    )
    assert set(steps["batch_sizes"]) == {"2", "4"} and steps["photos"] == 8
    for row in steps["batch_sizes"].values():
        assert len(row["seconds"]) == 2 and all(s > 0 for s in row["seconds"])
        assert row["photos_per_s"] > 0 and row["ms_per_step"] > 0
