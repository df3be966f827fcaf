"""The dataset card (`README.md`): Hub YAML metadata plus a readable summary of what was built."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from .splits import SPLITS


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M" if n < 1_000_000 else "1M<n<10M"


def _dataset_info(dataset: datasets.DatasetDict) -> dict:
    """The `dataset_info` block the Hub reads: features, and the size of every split."""
    features = next(iter(dataset.values())).features
    splits = [
        {
            "name": name,
            "num_bytes": int(dataset[name].data.nbytes),
            "num_examples": len(dataset[name]),
        }
        for name in SPLITS
    ]
    return {
        "features": features._to_yaml_list(),
        "splits": splits,
        "dataset_size": sum(s["num_bytes"] for s in splits),
    }


# The card's text below the YAML; `{report_json}` is the build report, in full.
BODY = """# {pretty_name}

{summary}

## Source

{source}

## Columns

| column | type |
|---|---|
{columns}

## Splits

70/20/10 by a stable hash of `product_id`: no product is in two splits, and a rebuild from a grown
source keeps every old product in its split.

| split | products |
|---|---|
{splits}

## Build report

{report_summary}

```json
{report_json}
```

## Usage

```python
from datasets import load_from_disk

dataset = load_from_disk("path/to/this/folder")  # or load_dataset("<hub id>") once pushed
example = dataset["train"][0]
example["image"], example["caption"], example["rating"]
```
"""


def write_dataset_card(
    folder: Path,
    dataset: datasets.DatasetDict,
    report: dict,
    *,
    pretty_name: str,
    summary: str,
    source: str,
    license: str,
    tags: list[str] | None = None,
) -> DatasetCard:
    """Write `folder/README.md` for a dataset saved with `save_to_disk`.

    Args:
        folder: the saved dataset folder.
        dataset: the dataset as loaded back from `folder` (sizes are read from it).
        report: the build report, summarised in the card.
        pretty_name / summary / source / license / tags: the source's own words.
    """
    data = _card_data(dataset, pretty_name, license, tags or [])
    features = next(iter(dataset.values())).features
    body = BODY.format(
        pretty_name=pretty_name,
        summary=summary,
        source=source,
        columns="\n".join(
            f"| `{name}` | {_describe(feature)} |" for name, feature in features.items()
        ),
        splits="\n".join(f"| {name} | {len(dataset[name]):,} |" for name in SPLITS),
        report_summary=_report_summary(report),
        report_json=json.dumps(report, indent=2),
    )
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    card.save(folder / "README.md")
    return card


def _card_data(
    dataset: datasets.DatasetDict, pretty_name: str, license: str, tags: list[str]
) -> DatasetCardData:
    """The Hub's YAML metadata: what the dataset is for, its size, and where each split's files are."""
    total = sum(len(dataset[name]) for name in SPLITS)
    return DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        language="en",
        task_categories=["image-to-text", "image-classification"],
        size_categories=_size_category(total),
        tags=["fashion", "product-rating", "image-captioning", *tags],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"{name}/data-*.arrow"} for name in SPLITS],
            }
        ],
        dataset_info=_dataset_info(dataset),
    )


def _report_summary(report: dict) -> str:
    """The build report in words: what was kept, and every drop by reason (the JSON follows)."""
    kept = report.get("kept", {})
    splits = " / ".join(f"{name} {kept.get(name, 0):,}" for name in SPLITS)
    lines = [f"Kept **{kept.get('total', 0):,}** rows ({splits})"]
    if "kept_products" in report:
        lines[0] += f" from {report['kept_products']:,} products"
    lines[0] += "."
    for key, what in (
        ("dropped_records", "Dropped records"),
        ("dropped_images", "Dropped images"),
        ("dropped", "Dropped"),
    ):
        if key in report:
            counts = ", ".join(f"{reason} {n:,}" for reason, n in report[key].items()) or "none"
            lines.append(f"{what}: {counts}.")
    return "\n".join(f"- {line}" for line in lines)


def _describe(feature) -> str:
    if isinstance(feature, datasets.Image):
        return "image (JPEG)"
    return getattr(feature, "dtype", type(feature).__name__)
