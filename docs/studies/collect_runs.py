"""Collect finished caption runs into one JSON each (config, results, history) and a markdown table.

    python docs/studies/collect_runs.py outputs/sweep/r02_ctx256 ... --out docs/results/catalog

Each run folder is a finished `train_caption.py --output_dir`; the JSON keeps what a reader needs to
check a table against: the model's settings, `eval_results.json` and `training_history.json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SETTINGS = ("encoder_name", "image_size", "attention", "embed_dim", "hidden_dim", "attention_dim",
            "context_dim", "dropout", "label_smoothing", "vocab_size", "train_last_blocks",
            "pretrained_weights")  # fmt: skip


def collect(run: Path) -> dict:
    config = json.loads((run / "config.json").read_text())
    history = json.loads((run / "training_history.json").read_text())
    args = run / "training_args.json"  # written by train_caption.py since train_last_blocks
    return {
        "run": run.name,
        "settings": {key: config.get(key) for key in SETTINGS},
        "training_args": json.loads(args.read_text()) if args.is_file() else None,
        "results": json.loads((run / "eval_results.json").read_text()),
        "history": history,
        "train_seconds": round(sum(h["seconds"] for h in history)),
    }


def row(record: dict) -> str:
    s, r = record["settings"], record["results"]
    precision = (record.get("training_args") or {}).get("mixed_precision")
    return (
        f"| {record['run']} | {s['encoder_name'].removeprefix('tf_efficientnet_')} {s['image_size']} px "
        f"{'frozen' if not s.get('train_last_blocks') else 'last ' + str(s['train_last_blocks']) + ' trained'} "
        f"| {'fp32' if precision == 'no' else precision or '-'} "
        f"| {'attention' if s['attention'] else 'pooled'} | {s['context_dim'] or '-'} | {s['dropout']} "
        f"| {s['label_smoothing']} | {len(record['history'])} | **{r['best_val_bleu']:.2f}** "
        f"| {r['bleu']:.2f} | {r.get('retrieval_bleu', float('nan')):.2f} | {record['train_seconds'] / 60:.0f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True, help="folder for one <run>.json per run")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| run | encoder | precision | decoder | context | dropout | smoothing | epochs | val BLEU (greedy) "
          "| test BLEU (beam) | test retrieval | minutes |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        record = collect(run)
        (args.out / f"{run.name}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(row(record))


if __name__ == "__main__":
    main()
