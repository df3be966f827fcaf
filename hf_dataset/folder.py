"""A folder of images plus a CSV -> product dataset (the original project's layout).

`metadata.csv` needs `product_id`, `filename` (relative to the images folder) and `caption`;
optional `rating` (1-5) and `rating_count`; every other column is kept as a string. A product may
have several rows (several images): they share the product's split. Rows are dropped, and counted,
for: a missing id, filename or caption (`malformed_row`), a rating that is not a number in [1, 5]
(`invalid_rating`), a file that does not exist (`missing_file`), one that does not decode
(`invalid_image`) or is a decompression bomb (`too_large`), a file already used (`duplicate_file`),
or an image identical to an earlier one (`duplicate_image`: one product listed twice would leak across
splits).
Images are verified and re-encoded exactly like downloaded ones (`download.process_image`).

`exclude` (a file of product ids) leaves products out, e.g. those a model will later be tested on
in another form: `--exclude ../shared/data/fashion_products/metadata.csv` builds the catalogue
without the 2,221 products whose sharp 224 px photos are in `fashion_products`.

Example: `../shared/data/fashion_products` (2,221 catalogue photos with titles, no ratings).
"""

from __future__ import annotations

import collections
import csv
import functools
import os
from pathlib import Path

import datasets

from .build import (
    DEFAULT_MAX_SIDE,
    BuildError,
    base_features,
    check_output,
    source_summary,
    write_dataset,
)
from .download import (
    DEFAULT_MAX_PIXELS,
    DownloadFailed,
    ImageRecords,
    add_image_arguments,
    ordered_map,
    process_image,
)

REQUIRED = ("product_id", "filename", "caption")
NUMERIC = ("rating", "rating_count")


_INVALID = object()


def _number(text: str | None, kind):
    """None for an empty cell, the number, or `_INVALID` (rating outside [1, 5], negative count)."""
    if not text:
        return None
    try:
        value = kind(float(text))
    except ValueError:
        return _INVALID
    if value != value or value < 0 or (kind is float and not 1.0 <= value <= 5.0):
        return _INVALID
    return value


def read_rows(csv_path: Path, dropped: collections.Counter) -> tuple[list[dict], list[str]]:
    """The CSV's valid rows (ratings parsed) and its extra column names."""
    with open(csv_path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise BuildError(
                f"{csv_path} lacks the column(s) {', '.join(missing)} "
                f"(needs {', '.join(REQUIRED)}; has {', '.join(columns) or 'none'})"
            )
        extras = [c for c in columns if c not in REQUIRED + NUMERIC and c != "image"]
        rows, seen_files = [], set()
        for raw in reader:
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not all(row.get(c) for c in REQUIRED):
                dropped["malformed_row"] += 1
                continue
            rating, count = _number(row.get("rating"), float), _number(row.get("rating_count"), int)
            if rating is _INVALID or count is _INVALID:
                dropped["invalid_rating"] += 1
                continue
            if row["filename"] in seen_files:
                dropped["duplicate_file"] += 1
                continue
            seen_files.add(row["filename"])
            rows.append(
                {
                    "product_id": row["product_id"],
                    "filename": row["filename"],
                    "caption": " ".join(row["caption"].split()),
                    "rating": rating,
                    "rating_count": count,
                    **{c: row.get(c, "") for c in extras},
                }
            )
    return rows, extras


def build(
    metadata: str | os.PathLike,
    output: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    max_products: int | None = None,
    exclude: str | os.PathLike | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 4,
    overwrite: bool = False,
):
    """Build the dataset from `metadata` (CSV) and the `images` folder (default: `images/` beside it).

    Args:
        max_products: keep only the first N distinct product ids of the CSV (a quick subset).
        exclude: a file of product ids to leave out (`read_ids`), applied before `max_products`.
        max_side / max_pixels: as for the amazon source.
        workers: threads decoding and re-encoding images.
    """
    metadata = Path(metadata)
    images = _check(metadata, images, max_products)
    excluded_ids = (
        read_ids(exclude) if exclude is not None else None
    )  # before the output is touched
    output = check_output(output, overwrite)

    dropped = collections.Counter()
    rows, extras = read_rows(metadata, dropped)
    excluded = None  # what was left out, for the report and the card
    if excluded_ids is not None:
        kept = [r for r in rows if r["product_id"] not in excluded_ids]
        excluded = {"file": str(exclude), "ids": len(excluded_ids), "rows": len(rows) - len(kept)}
        rows = kept
    rows = _first_products(rows, max_products)
    if not rows:
        raise BuildError(f"no usable row in {metadata} (dropped: {dict(dropped) or 'none'})")
    report = _report(metadata, images, rows, dropped, max_products, max_side, max_pixels)
    if excluded:
        report["excluded"] = excluded
    to_records = ImageRecords(dropped, unique_images=True, omit=("filename",))

    def records():
        from tqdm.auto import tqdm

        load = functools.partial(_read_image, images, max_side=max_side, max_pixels=max_pixels)
        pairs = ordered_map(load, rows, workers=workers)
        yield from to_records(tqdm(pairs, total=len(rows), desc="reading images", unit="img"))

    return write_dataset(
        records,
        output,
        features=base_features(extras),
        report=report,
        card=_card(metadata, images, rows, max_side, excluded),
        overwrite=overwrite,
        summarize=lambda dataset: source_summary(dataset, {"dropped": dropped}, to_records.seconds),
    )


def _check(metadata: Path, images: str | os.PathLike | None, max_products: int | None) -> Path:
    """The images folder, once the arguments are known to be usable."""
    if not metadata.is_file():
        raise BuildError(f"metadata CSV not found: {metadata}")
    images = Path(images) if images else metadata.parent / "images"
    if not images.is_dir():
        raise BuildError(f"images folder not found: {images}")
    if max_products is not None and max_products < 1:
        raise BuildError(f"--max_products must be a positive integer, got {max_products}")
    return images


def read_ids(path: str | os.PathLike) -> set[str]:
    """Product ids from a CSV with a `product_id` column (e.g. another folder's metadata.csv) or a
    text file with one id per line (blank lines and `#` comments skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (FileNotFoundError, IsADirectoryError):
        raise BuildError(f"--exclude file not found: {path}") from None
    lines = text.splitlines()
    header = [c.strip() for c in next(csv.reader(lines[:1]), [])]
    if "product_id" in header:
        ids = {(row.get("product_id") or "").strip() for row in csv.DictReader(lines)}
    else:
        ids = {line.strip() for line in lines if not line.lstrip().startswith("#")}
    ids.discard("")
    if not ids:
        raise BuildError(f"--exclude file {path} holds no product id")
    return ids


def _first_products(rows: list[dict], max_products: int | None) -> list[dict]:
    """The rows of the first `max_products` distinct product ids (all rows for None)."""
    if max_products is None:
        return rows
    keep = set(list(dict.fromkeys(r["product_id"] for r in rows))[:max_products])
    return [r for r in rows if r["product_id"] in keep]


def _read_image(
    images: Path, row: dict, *, max_side: int, max_pixels: int
) -> bytes | DownloadFailed:
    """The row's file, verified and re-encoded like a downloaded image, or why it cannot be used."""
    try:
        data = (images / row["filename"]).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return DownloadFailed("missing_file", row["filename"])
    except OSError as error:
        return DownloadFailed("invalid_image", f"{row['filename']}: {error}")
    try:
        return process_image(data, max_side, max_pixels)
    except DownloadFailed as failure:
        return failure


def _report(
    metadata: Path,
    images: Path,
    rows: list[dict],
    dropped: collections.Counter,
    max_products: int | None,
    max_side: int,
    max_pixels: int,
) -> dict:
    """The build report's own entries; `rows_read` counts the rows the CSV reading dropped."""
    return {
        "source": "folder",
        "metadata": str(metadata),
        "images": str(images),
        "rows_read": len(rows) + sum(dropped.values()),
        "max_products": max_products,
        "image": {"max_side": max_side, "format": "JPEG q90", "max_pixels": max_pixels},
    }


def _card(
    metadata: Path, images: Path, rows: list[dict], max_side: int, excluded: dict | None
) -> dict:
    has_rating = any(r["rating"] is not None for r in rows)
    left_out = (
        f" {excluded['rows']:,} rows of the {excluded['ids']:,} product ids in "
        f"`{Path(excluded['file']).name}` are left out."
        if excluded
        else ""
    )
    return {
        "pretty_name": f"Fashion products ({metadata.parent.name})",
        "summary": (
            f"Product photos from `{images.name}/` with the titles of `{metadata.name}` as captions"
            + ("" if has_rating else " (no ratings: `rating` and `rating_count` are null)")
            + f"; images verified, longest side capped at {max_side} px, JPEG q90."
            + left_out
        ),
        "source": (
            f"Built by `python -m hf_dataset folder --metadata {metadata}` from a folder of images and a "
            "CSV (`product_id, filename, caption[, rating]` plus extra columns). **License:** a public "
            "fashion-catalogue dataset; check its license before redistributing."
        ),
        "license": "other",
        "tags": ["fashion-catalogue"],
    }


def add_arguments(parser) -> None:
    parser.add_argument(
        "--metadata",
        required=True,
        help="CSV with product_id, filename, caption[, rating, rating_count] and extra columns",
    )
    parser.add_argument(
        "--images", default=None, help="the images folder (default: images/ beside the CSV)"
    )
    parser.add_argument("--output", required=True, help="dataset folder to write")
    parser.add_argument(
        "--max_products",
        "--max-products",
        type=int,
        default=None,
        help="keep only the first N products",
    )
    parser.add_argument(
        "--exclude",
        default=None,
        help="leave out these products: a CSV with a product_id column or one id per line",
    )
    add_image_arguments(parser)
    parser.add_argument("--workers", type=int, default=4, help="image threads (default: 4)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty output folder"
    )


def main(args) -> datasets.DatasetDict:
    return build(
        args.metadata,
        args.output,
        images=args.images,
        max_products=args.max_products,
        exclude=args.exclude,
        max_side=args.max_side,
        max_pixels=args.max_pixels,
        workers=args.workers,
        overwrite=args.overwrite,
    )
