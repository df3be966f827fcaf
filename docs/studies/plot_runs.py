"""Validation BLEU per epoch of collected caption runs: one line per run, one colour per decoder.

    uv run python docs/studies/plot_runs.py docs/results/catalog/r3[4-9]*.json \\
        --out docs/results/catalog/attention_vs_pooled.png

Reads the JSON that `collect_runs.py` writes for each run, so runs whose folders are gone still plot;
the runs' test retrieval baseline is the dashed line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.plots import plot_curves


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs", nargs="+", type=Path, help="collect_runs.py JSON files")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = p.parse_args()
    records = [json.loads(run.read_text()) for run in args.runs]
    logs, series, colors = [], {}, {}
    for record in records:
        decoder = "attention" if record["settings"]["attention"] else "pooled"
        label = f"{record['run']} ({decoder}): test {record['results']['bleu']:.2f}"
        series[label] = record["run"]
        colors[label] = "tab:blue" if decoder == "attention" else "tab:orange"
        logs += [{"epoch": h["epoch"], record["run"]: h["val_bleu"]} for h in record["history"]]
    # one dashed line for the runs' retrieval baselines: they differ only by the features' precision
    baselines = sorted({round(record["results"]["retrieval_bleu"], 2) for record in records})
    retrieval = {f"retrieval, test: {' / '.join(map(str, baselines))}": baselines[0]}
    path = plot_curves(logs, args.out, series, ylabel="validation BLEU (greedy)", hlines=retrieval,
                       title="catalogue: validation BLEU per epoch", colors=colors)  # fmt: skip
    print(path)


if __name__ == "__main__":
    main()
