"""docs/studies/collect_runs.py: a run folder becomes its JSON, and the run log's tables are the JSON's."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "docs" / "studies" / "collect_runs.py"
RUNS = ROOT / "docs" / "results" / "RUNS.md"


@pytest.fixture(scope="module")
def collect_runs():
    spec = importlib.util.spec_from_file_location("collect_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_run_log_is_written_from_the_committed_json(collect_runs):
    """RUNS.md's tables are what the JSON says: a run added without rewriting them fails here."""
    text = RUNS.read_text()
    assert text.count("<!-- collect_runs.py: end -->") == 2
    assert collect_runs.render(text) == text, (
        "docs/results/RUNS.md is stale: uv run --no-sync python docs/studies/collect_runs.py "
        "--markdown docs/results/RUNS.md"
    )
    # every committed catalogue run has its row, with its test BLEU
    for path in sorted((ROOT / "docs" / "results" / "catalog").glob("*.json")):
        record = json.loads(path.read_text())
        bleu = record.get("results", record)["bleu"]
        assert f"| {path.stem} (" in text and f"| {bleu:.2f} |" in text, path.name


def test_a_run_folder_becomes_a_record_and_a_row(collect_runs, tmp_path):
    run = tmp_path / "r99_tiny"
    run.mkdir()
    config = {"encoder_name": "tf_efficientnet_lite0", "image_size": 128, "attention": False,
              "context_dim": None, "dropout": 0.3, "label_smoothing": 0.0, "train_last_blocks": 1}  # fmt: skip
    (run / "config.json").write_text(json.dumps(config))
    history = [
        {"epoch": 1, "val_bleu": 10.0, "seconds": 90.0},
        {"epoch": 2, "val_bleu": 12.0, "seconds": 30.4},
    ]
    (run / "training_history.json").write_text(json.dumps(history))
    (run / "eval_results.json").write_text(
        json.dumps({"bleu": 13.456, "best_val_bleu": 12.0, "retrieval_bleu": 9.0})
    )
    (run / "training_args.json").write_text(json.dumps({"mixed_precision": "no"}))
    record = collect_runs.collect(run)
    assert record["train_seconds"] == 120 and record["settings"]["image_size"] == 128
    assert collect_runs.row(record) == (
        "| r99_tiny | lite0 128 px last 1 trained | fp32 | pooled | - | 0.3 | 0.0 | 2 | **12.00** "
        "| 13.46 | 9.00 | 2 |"
    )


def test_only_the_marked_tables_are_rewritten(collect_runs, tmp_path):
    text = "# log\n\nby hand\n\n<!-- collect_runs.py: demo -->\nold table\n<!-- collect_runs.py: end -->\n\nafter\n"
    new = collect_runs.render(text)
    assert new.startswith("# log\n\nby hand\n\n<!-- collect_runs.py: demo -->\n| JSON |")
    assert new.endswith("<!-- collect_runs.py: end -->\n\nafter\n") and "old table" not in new
    with pytest.raises(SystemExit, match="unknown table"):
        collect_runs.render("<!-- collect_runs.py: nope -->\n<!-- collect_runs.py: end -->")


def test_check_exits_1_on_a_stale_file(tmp_path, monkeypatch, collect_runs):
    stale = tmp_path / "RUNS.md"
    stale.write_text("<!-- collect_runs.py: demo -->\nold\n<!-- collect_runs.py: end -->\n")
    monkeypatch.setattr(sys, "argv", ["collect_runs.py", "--markdown", str(stale), "--check"])
    with pytest.raises(SystemExit) as stopped:
        collect_runs.main()
    assert stopped.value.code not in (0, None) and "old" in stale.read_text()
    monkeypatch.setattr(sys, "argv", ["collect_runs.py", "--markdown", str(stale)])
    collect_runs.main()
    monkeypatch.setattr(sys, "argv", ["collect_runs.py", "--markdown", str(stale), "--check"])
    with pytest.raises(SystemExit) as stopped:
        collect_runs.main()
    assert stopped.value.code == 0
