"""Collect finished caption runs into one JSON each, and write the run log's tables from that JSON.

    python docs/studies/collect_runs.py outputs/sweep/r02_ctx256 ... --out docs/results/catalog
    python docs/studies/collect_runs.py --markdown docs/results/RUNS.md [--check]

Each run folder is a finished `train_caption.py --output_dir`; the JSON keeps what a reader needs to
check a table against: the model's settings, `eval_results.json` and `training_history.json`.
`--markdown` rewrites the tables between the `<!-- collect_runs.py: NAME -->` and
`<!-- collect_runs.py: end -->` markers of FILE from the committed JSON (docs/results/catalog/ and
docs/results/demo/) and leaves the rest of FILE as written; `--check` only says whether they are
current (exit status 1 when not).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
SETTINGS = ("encoder_name", "image_size", "attention", "embed_dim", "hidden_dim", "attention_dim",
            "context_dim", "dropout", "label_smoothing", "vocab_size", "train_last_blocks",
            "pretrained_weights")  # fmt: skip

# What each run was, in the order of the log's table (runs not named here follow, by name); the
# settings the JSON records are in the other columns.
NOTES = {
    "make_catalog_8_epochs_peak4e-3": "`make catalog` at 8 epochs with twice the peak learning rate "
    "(4e-3, encoder 1.2e-3; item 4 of the speed issue), timed: 22 min 16 s, cold cache; not taken",
    "make_catalog_channels_last": "`make catalog` with the trained stage in channels_last, timed: "
    "32 min 33 s, cold cache",
    "make_catalog_9_epochs": "the recipe at 9 epochs, on the 6-epoch run's warm cache, not timed "
    "(it shared the machine with the test suite); not taken",
    "make_catalog_6_epochs": "`make catalog` at 6 epochs instead of 12 (item 4 of the speed issue), "
    "timed: 19 min 52 s, cold cache; not taken",
    "make_catalog_onnxruntime": "`make catalog` with the cache filled by ONNX Runtime (fp32), timed: "
    "33 min 12 s, cold cache",
    "make_catalog_avx512bf16": "`make catalog`, the recipe, timed: 35 min 58 s, cold cache, transformers-native "
    "generation with the repetition guard; its eval_results.json only",
    "make_catalog_192px": "`make catalog`, the recipe, timed: 29 min 22 s, cold cache; r34's settings",
    "r34_192px_enclr6e-4": "r28 at `--image_size 192`: the recipe",
    "r35_192px_enclr6e-4_seed1": "r34, `--seed 1`",
    "r36_192px_enclr6e-4_seed2": "r34, `--seed 2`",
    "r37_pooled_192px": "r34, `--attention false`",
    "r38_pooled_192px_seed1": "r37, `--seed 1`",
    "r39_pooled_192px_seed2": "r37, `--seed 2`",
    "r28_enclr6e-4": "r22, `--encoder_learning_rate 6e-4`",
    "r29_tail1_192px": "r22, `--image_size 192`: 6x6 tokens",
    "r30_tail1_hflip": "r22, `--hflip_train`",
    "r22_tail1": "the recipe from 2026-12-02 to 2026-12-03",
    "r25_tail1_seed1": "r22, `--seed 1`",
    "r26_tail1_seed2": "r22, `--seed 2`",
    "r27_tail1_pooled": "r22, `--attention false`",
    "make_catalog_tail1": "`make catalog` with r22's recipe, timed: 25 min 11 s idle, cold cache; the same "
    "numbers as r22",
    "make_catalog_bf16": "r03 in bf16, `make catalog` before the recipe changed",
    "r24_seed1": "make_catalog_bf16, `--seed 1`",
    "r03_lite0_full": "the frozen recipe",
    "r04_lite0_pooled": "r03, `--attention false`",
    "r02_ctx256": "`--context_dim 256`, 10 epochs",
    "r11_lite2_ctx256": "r02 with Lite2",
    "r05_reg": "r03, dropout 0.5 and label smoothing 0.1",
    "r03_seed1": "r03, `--seed 1`",
}  # fmt: skip
# Precision where the JSON does not record it: the runs collected before training_args.json existed
# (r02-r11) were fp32, the code had no bf16 then; make_catalog_bf16's training_args were not kept.
PRECISION = {"make_catalog_bf16": "bf16"}
DEMO_NOTES = {
    "rating_eval_results_avx512bf16.json": "AMD EPYC, AVX-512 BF16, with the interval (2026-12-07): the README's",
    "rating_eval_results.json": "AMD EPYC, AVX2 only",
    "rating_eval_results_xeonamx.json": "Intel Xeon with AMX",
    "rating_lite0_pretrained_eval_results.json": "Lite0 pretrained, fine-tuned, 128 px",
    "rating_lite0_random_eval_results.json": "Lite0 random init, fine-tuned, 128 px",
    "rating_lite0_frozen_eval_results.json": "Lite0 pretrained, frozen, 128 px",
    "caption_eval_results_avx512bf16.json": "AMD EPYC, AVX-512 BF16: the README's",
    "caption_eval_results.json": "AMD EPYC, AVX2 only",
    "caption_eval_results_xeonamx.json": "Intel Xeon with AMX",
    "caption_lite0_64_eval_results.json": "frozen Lite0 at 64 px",
}  # fmt: skip
CATALOG_HEADER = (
    "| run | encoder | precision | decoder | context | dropout | smoothing | epochs | val BLEU (greedy) "
    "| test BLEU (beam) | test retrieval | minutes |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)
MARKER = re.compile(
    r"(<!-- collect_runs.py: (\w+) -->\n)(.*?)(<!-- collect_runs.py: end -->)", re.S
)


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


def precision(record: dict) -> str:
    if "training_args" not in record:
        return "fp32"
    value = (record["training_args"] or {}).get("mixed_precision") or PRECISION.get(record["run"])
    return "fp32" if value == "no" else value or "-"


def row(record: dict) -> str:
    s, r = record["settings"], record["results"]
    name = record["run"] + (f" ({NOTES[record['run']]})" if record["run"] in NOTES else "")
    return (
        f"| {name} | {s['encoder_name'].removeprefix('tf_efficientnet_')} {s['image_size']} px "
        f"{'frozen' if not s.get('train_last_blocks') else 'last ' + str(s['train_last_blocks']) + ' trained'} "
        f"| {precision(record)} "
        f"| {'attention' if s['attention'] else 'pooled'} | {s['context_dim'] or '-'} | {s['dropout']} "
        f"| {s['label_smoothing']} | {len(record['history'])} | **{r['best_val_bleu']:.2f}** "
        f"| {r['bleu']:.2f} | {r.get('retrieval_bleu', float('nan')):.2f} | {record['train_seconds'] / 60:.0f} |"
    )


def eval_only_row(name: str, r: dict) -> str:
    """A run kept as its eval_results.json alone: the scores, not the settings."""
    return (
        f"| {name} ({NOTES.get(name, 'eval_results.json only')}) | - | - | - | - | - | - | - "
        f"| **{r['best_val_bleu']:.2f}** | {r['bleu']:.2f} | {r['retrieval_bleu']:.2f} | - |"
    )


def by_notes(paths: list[Path], notes: dict, key) -> list[Path]:
    """`paths` in the order of `notes` (by `key(path)`), then the others by name."""
    order = {name: i for i, name in enumerate(notes)}
    return sorted(paths, key=lambda path: (order.get(key(path), len(order)), path.name))


def catalog_table(folder: Path) -> str:
    rows = []
    for path in by_notes(sorted(folder.glob("*.json")), NOTES, lambda p: p.stem):
        record = json.loads(path.read_text())
        rows.append(row(record) if "results" in record else eval_only_row(path.stem, record))
    return "\n".join([CATALOG_HEADER, *rows])


def demo_tables(folder: Path) -> str:
    paths = by_notes(sorted(folder.glob("*eval_results*.json")), DEMO_NOTES, lambda p: p.name)
    rating = ["| JSON | run | MAE | RMSE | R^2 | 90% interval: coverage / width | train-mean MAE | oracle R^2 "
              "| validation MAE | training s |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    caption = ["| JSON | run | test BLEU (beam) | nearest train title | constant title | BLEU on new titles "
               "| best val BLEU (epoch) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for path in paths:
        r, name = json.loads(path.read_text()), f"[{path.name}](demo/{path.name})"
        note = DEMO_NOTES.get(path.name, "-")
        if "mae" in r:
            interval = (f"{r['interval_coverage']:.1%} / {r['interval_width']:.2f}"
                        if "interval_coverage" in r else "-")  # fmt: skip
            rating.append(
                f"| {name} | {note} | {r['mae']:.3f} | {r['rmse']:.3f} | {r['r2']:.3f} | {interval} "
                f"| {r['baseline_mae']:.3f} | {r['oracle_r2']:.3f} | {r['validation']['mae']:.3f} "
                f"| {r['train_runtime_s']:.0f} |"
            )
        else:
            caption.append(
                f"| {name} | {note} | {r['bleu']:.2f} | {r['retrieval_bleu']:.2f} | {r['baseline_bleu']:.2f} "
                f"| {r['bleu_unseen_titles']:.2f} | {r['best_val_bleu']:.2f} ({r['best_epoch']}) |"
            )
    return "\n".join(rating) + "\n\n" + "\n".join(caption)


def render(text: str, results: Path = RESULTS) -> str:
    """`text` with every marked table rewritten from the JSON under `results`."""
    tables = {"catalog": lambda: catalog_table(results / "catalog"),
              "demo": lambda: demo_tables(results / "demo")}  # fmt: skip

    def fill(match: re.Match) -> str:
        start, name, _, end = match.groups()
        if name not in tables:
            raise SystemExit(f"error: unknown table {name!r} (known: {', '.join(tables)})")
        return f"{start}{tables[name]()}\n{end}"

    return MARKER.sub(fill, text)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs", nargs="*", type=Path)
    p.add_argument("--out", type=Path, help="folder for one <run>.json per run")
    p.add_argument("--markdown", type=Path, help="rewrite the marked tables of this file")
    p.add_argument(
        "--check", action="store_true", help="with --markdown: only check, exit 1 if stale"
    )
    args = p.parse_args()
    if args.markdown:
        text = args.markdown.read_text()
        new = render(text)
        if not MARKER.search(text):
            sys.exit(f"error: {args.markdown} has no <!-- collect_runs.py: NAME --> markers")
        if args.check:
            sys.exit(0 if new == text else f"{args.markdown} is stale: run with --markdown again")
        args.markdown.write_text(new)
        return
    if not args.runs or not args.out:
        p.error("give run folders and --out, or --markdown FILE")
    args.out.mkdir(parents=True, exist_ok=True)
    print(CATALOG_HEADER)
    for run in args.runs:
        record = collect(run)
        (args.out / f"{run.name}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(row(record))


if __name__ == "__main__":
    main()
