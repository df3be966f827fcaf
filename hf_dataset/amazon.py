"""Amazon Reviews 2023 item metadata (`meta_Amazon_Fashion.jsonl`) -> product rating/caption dataset.

One JSON object a line (McAuley Lab, UCSD; https://amazon-reviews-2023.github.io/):
rating = `average_rating`, rating_count = `rating_number`, caption = the cleaned `title`,
image = the `MAIN` image (or every image with `--images all`, one row each, same `product_id`,
so all of a product's rows stay in one split).

The file is read twice as a stream (bounded memory on all 826K records): once to count what the
filters keep, for the progress bar's total, once to download and write. Each record is dropped for
the first reason that applies, in this order: malformed line, no product id, no title, no rating,
below `--min_ratings`, no image, duplicate product; each image for duplicate URL, then for its
download (`http_404`, `timeout`, `invalid_image`, `too_large`, ...). Every count is in the report.
"""

from __future__ import annotations

import collections
import gzip
import html
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets

from .build import BuildError, base_features, check_output, source_summary, write_dataset
from .download import (
    DownloadConfig,
    DownloadRun,
    ImageCache,
    ImageRecords,
    add_image_arguments,
)

IMAGE_FIELDS = ("hi_res", "large", "thumb")
EXTRA_COLUMNS = ["store", "main_category", "price", "details", "variant", "image_url"]
DEFAULT_MIN_RATINGS = 5


@dataclass
class Filters:
    """Which records and images become rows.

    Args:
        images: `main` (the `MAIN` variant, else the first image) or `all` (one row per image).
        min_ratings: drop products rated by fewer people (their average is a noisy label).
        max_products: stop after this many products pass the record filters (None: all).
        image_fields: URL fields to try in order for each image.
    """

    images: str = "main"
    min_ratings: int = DEFAULT_MIN_RATINGS
    max_products: int | None = None
    image_fields: tuple[str, ...] = IMAGE_FIELDS


def clean_title(title) -> str:
    """HTML entities decoded, whitespace collapsed: `"Tee &amp; Shorts\\n Set "` -> `"Tee & Shorts Set"`."""
    if not isinstance(title, str):
        return ""
    return re.sub(r"\s+", " ", html.unescape(title)).strip()


def _rating(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value) if 1.0 <= value <= 5.0 else None


def _count(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return 0
    return int(value)


def image_urls(record: dict, filters: Filters) -> list[tuple[str, str]]:
    """`(variant, url)` of the images to use, best available field of each."""
    images = record.get("images")
    if not isinstance(images, list):
        return []
    found = []
    for image in images:
        if not isinstance(image, dict):
            continue
        url = next((image[f] for f in filters.image_fields if isinstance(image.get(f), str)), None)
        if url and url.strip():
            found.append((str(image.get("variant") or ""), url.strip()))
    if filters.images == "main" and found:
        return [next((f for f in found if f[0] == "MAIN"), found[0])]
    return found


def read_records(path: Path, dropped: collections.Counter) -> Iterator[dict]:
    """Stream the JSON objects of a `.jsonl` or `.jsonl.gz` file, counting malformed lines."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as file:
        for line in file:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                dropped["malformed_line"] += 1
                continue
            yield record


def select(
    records: Iterator[dict],
    filters: Filters,
    dropped_records: collections.Counter,
    dropped_images: collections.Counter,
) -> Iterator[dict]:
    """Apply the filters; yield one row (everything but the image) per image to download."""
    seen_products: set[str] = set()
    seen_urls: set[str] = set()
    for record in records:
        if filters.max_products is not None and len(seen_products) >= filters.max_products:
            return
        product_id = record.get("parent_asin")
        caption = clean_title(record.get("title"))
        rating = _rating(record.get("average_rating"))
        rating_count = _count(record.get("rating_number"))
        urls = image_urls(record, filters)
        if not isinstance(product_id, str) or not product_id.strip():
            reason = "no_product_id"
        elif not caption:
            reason = "no_title"
        elif rating is None:
            reason = "no_rating"
        elif rating_count < filters.min_ratings:
            reason = "below_min_ratings"
        elif not urls:
            reason = "no_image"
        elif product_id in seen_products:
            reason = "duplicate_product"
        else:
            reason = None
        if reason:
            dropped_records[reason] += 1
            continue
        fresh = []
        for variant, url in urls:
            if url in seen_urls:
                dropped_images["duplicate_image"] += 1
            else:
                seen_urls.add(url)
                fresh.append((variant, url))
        if not fresh:  # every image already belongs to another product
            continue
        seen_products.add(product_id)
        details = record.get("details")
        for variant, url in fresh:
            yield {
                "product_id": product_id,
                "caption": caption,
                "rating": rating,
                "rating_count": rating_count,
                "store": str(record.get("store") or ""),
                "main_category": str(record.get("main_category") or ""),
                "price": "" if record.get("price") is None else str(record["price"]),
                "details": json.dumps(details, ensure_ascii=False) if details else "",
                "variant": variant,
                "image_url": url,
            }


def resolve_metadata(metadata: str, download_dir: Path) -> Path:
    """A local path as is; an `http(s)://` URL or `hf://datasets/OWNER/NAME/PATH` downloaded first."""
    if metadata.startswith(("http://", "https://")):
        from .download import download_file

        name = metadata.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "metadata.jsonl"
        destination = download_dir / name
        if destination.is_file():  # downloaded by an earlier (maybe killed) run: atomic, so whole
            return destination
        try:
            return download_file(metadata, destination)
        except Exception as error:
            raise BuildError(
                f"could not download {metadata} ({type(error).__name__}: {error})"
            ) from None
    if metadata.startswith("hf://"):
        from huggingface_hub import hf_hub_download

        parts = metadata[len("hf://") :].split("/")
        if len(parts) < 4 or parts[0] != "datasets":
            raise BuildError(f"expected hf://datasets/OWNER/NAME/PATH/IN/REPO, got {metadata}")
        repo_id, filename = "/".join(parts[1:3]), "/".join(parts[3:])
        try:
            return Path(hf_hub_download(repo_id, filename, repo_type="dataset"))
        except Exception as error:  # offline, not found, no access
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise BuildError(
                f"could not download {filename} from the Hub dataset {repo_id} "
                f"({type(error).__name__}: {first})"
            ) from None
    path = Path(metadata)
    if not path.is_file():
        raise BuildError(f"metadata file not found: {metadata}")
    return path


def build(
    metadata: str | os.PathLike,
    output: str | os.PathLike,
    *,
    filters: Filters | None = None,
    download: DownloadConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
):
    """Build the dataset from an Amazon Reviews 2023 metadata file (see the module docstring).

    Args:
        metadata: a local `.jsonl`/`.jsonl.gz`, an `http(s)://` URL or an `hf://datasets/...` file.
        output: the dataset folder to write.
        filters: which products and images to keep (`Filters`).
        download: timeouts, retries, workers, image size (`DownloadConfig`).
        cache_dir: processed images, kept between runs (default: `OUTPUT.cache` beside the output).
        overwrite: replace a non-empty `output`.
    """
    filters = filters or Filters()
    download = download or DownloadConfig()
    _check(filters, download)
    output = check_output(output, overwrite)  # before any download: fail fast
    cache_dir = Path(cache_dir) if cache_dir else output.with_name(output.name + ".cache")
    path = resolve_metadata(str(metadata), cache_dir / "metadata")

    dropped_records, dropped_images = collections.Counter(), collections.Counter()
    products, total = _count_selected(path, filters, dropped_records, dropped_images)
    run = DownloadRun(ImageCache(cache_dir, download.max_side), download)
    to_records = ImageRecords(dropped_images)

    def records():
        # Pass 2: the same rows again (the filters are deterministic, the drops counted in pass 1),
        # now with their images.
        rows = select(
            read_records(path, collections.Counter()),
            filters,
            collections.Counter(),
            collections.Counter(),
        )
        yield from to_records(run(rows, url_of=lambda row: row["image_url"], total=total))
        if not to_records.kept:
            raise BuildError(f"none of the {total} images could be used ({dict(dropped_images)})")

    def summarize(dataset) -> dict:
        seconds = to_records.seconds
        rate = round(total / seconds, 1) if seconds else None
        downloads = {**run.stats.as_dict(), "images_per_second": rate}
        return source_summary(dataset, {"dropped_images": dropped_images}, seconds, downloads)

    return write_dataset(
        records,
        output,
        features=base_features(EXTRA_COLUMNS),
        report=_report(metadata, filters, download, products, total, dropped_records),
        card=_card(metadata, filters, download.max_side),
        overwrite=overwrite,
        summarize=summarize,
    )


def _count_selected(
    path: Path,
    filters: Filters,
    dropped_records: collections.Counter,
    dropped_images: collections.Counter,
) -> tuple[int, int]:
    """Pass 1: how many products and images the filters keep; the counters get why the rest goes."""
    products, total = set(), 0
    for row in select(
        read_records(path, dropped_records), filters, dropped_records, dropped_images
    ):
        products.add(row["product_id"])
        total += 1
    if total == 0:
        raise BuildError(
            f"no record of {path} passes the filters (dropped: {dict(dropped_records) or 'none'})"
        )
    return len(products), total


def _report(
    metadata,
    filters: Filters,
    download: DownloadConfig,
    products: int,
    images: int,
    dropped_records: collections.Counter,
) -> dict:
    """The build report's own entries: the arguments and what pass 1 selected and dropped."""
    return {
        "source": "amazon",
        "metadata": str(metadata),
        "filters": {
            "images": filters.images,
            "min_ratings": filters.min_ratings,
            "max_products": filters.max_products,
            "image_fields": list(filters.image_fields),
            "dedupe": "by parent_asin and by image URL (first one wins)",
        },
        "image": {
            "max_side": download.max_side,
            "format": "JPEG q90",
            "max_pixels": download.max_pixels,
        },
        "selected": {"products": products, "images": images},
        "dropped_records": dict(sorted(dropped_records.items())),
    }


def _card(metadata, filters: Filters, max_side: int) -> dict:
    return {
        "pretty_name": "Amazon Fashion products (Amazon Reviews 2023)",
        "summary": (
            "Product photos from the Amazon Reviews 2023 `Amazon_Fashion` item metadata, each with its "
            "star rating (`average_rating`, 1-5), the number of ratings behind it (`rating_number`) "
            "and its product title as the caption. " + describe_filters(filters, max_side)
        ),
        "source": (
            f"Built by `python -m hf_dataset amazon --metadata {metadata}` from the item metadata of "
            "[Amazon Reviews 2023](https://amazon-reviews-2023.github.io/) (Hou et al., 2024; McAuley Lab, "
            "UCSD). Images were downloaded from the URLs in the metadata. **License:** the Amazon Reviews "
            "2023 data is released for research use; the product photos and titles belong to their "
            "owners. Check the terms before any other use or redistribution."
        ),
        "license": "other",
        "tags": ["amazon-reviews-2023"],
    }


def describe_filters(filters: Filters, max_side: int) -> str:
    """The filters in a sentence, for the dataset card."""
    parts = [
        "the main image of each product"
        if filters.images == "main"
        else "every image of each product (one row each)",
        f"products with at least {filters.min_ratings} ratings"
        if filters.min_ratings > 1
        else "every rated product",
    ]
    if filters.max_products:
        parts.append(f"the first {filters.max_products} products that pass")
    parts.append("deduplicated by product and by image URL")
    return (
        f"Filters: {', '.join(parts)}; images verified, longest side capped at {max_side} px, "
        "JPEG q90."
    )


def _check(filters: Filters, download: DownloadConfig) -> None:
    if filters.images not in ("main", "all"):
        raise BuildError(f"--images must be main or all, got {filters.images}")
    if filters.min_ratings < 0:
        raise BuildError(f"--min_ratings must be >= 0, got {filters.min_ratings}")
    if filters.max_products is not None and filters.max_products < 1:
        raise BuildError(f"--max_products must be a positive integer, got {filters.max_products}")
    unknown = set(filters.image_fields) - set(IMAGE_FIELDS)
    if unknown or not filters.image_fields:
        raise BuildError(f"--image_fields must be a comma list of {','.join(IMAGE_FIELDS)}")
    if not 32 <= download.max_side <= 4096:
        raise BuildError(f"--max_side must be between 32 and 4096 pixels, got {download.max_side}")
    if download.workers < 1 or download.retries < 0 or download.timeout <= 0:
        raise BuildError("--workers must be >= 1, --retries >= 0 and --timeout > 0")


def add_arguments(parser) -> None:
    parser.add_argument(
        "--metadata",
        required=True,
        help="meta_Amazon_Fashion.jsonl(.gz): a local file, an http(s):// URL or "
        "hf://datasets/OWNER/NAME/PATH (e.g. hf://datasets/McAuley-Lab/Amazon-Reviews-2023/"
        "raw/meta_categories/meta_Amazon_Fashion.jsonl)",
    )
    parser.add_argument("--output", required=True, help="dataset folder to write")
    parser.add_argument(
        "--images",
        choices=("main", "all"),
        default="main",
        help="main: one row per product (its MAIN image); all: one row per image (default: main)",
    )
    parser.add_argument(
        "--min_ratings",
        "--min-ratings",
        type=int,
        default=DEFAULT_MIN_RATINGS,
        help=f"drop products with fewer ratings: noisy labels (default: {DEFAULT_MIN_RATINGS})",
    )
    parser.add_argument(
        "--max_products",
        "--max-products",
        type=int,
        default=None,
        help="stop after N products pass the filters",
    )
    parser.add_argument(
        "--image_fields",
        "--image-fields",
        default=",".join(IMAGE_FIELDS),
        help=f"URL fields to try in order (default: {','.join(IMAGE_FIELDS)})",
    )
    add_image_arguments(parser)
    parser.add_argument("--workers", type=int, default=16, help="parallel downloads (default: 16)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per connect/read (default: 10)"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="retries on timeouts, connection errors and 5xx; none on 4xx (default: 3)",
    )
    parser.add_argument(
        "--backoff", type=float, default=0.5, help="first retry delay in seconds, doubled each time"
    )
    parser.add_argument(
        "--cache_dir",
        "--cache-dir",
        default=None,
        help="where processed images are kept between runs, so a killed run resumes "
        "(default: OUTPUT.cache beside the output folder)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty output folder"
    )


def main(args) -> datasets.DatasetDict:
    filters = Filters(
        images=args.images,
        min_ratings=args.min_ratings,
        max_products=args.max_products,
        image_fields=tuple(f.strip() for f in args.image_fields.split(",") if f.strip()),
    )
    download = DownloadConfig(
        timeout=args.timeout,
        retries=args.retries,
        backoff=args.backoff,
        max_side=args.max_side,
        max_pixels=args.max_pixels,
        workers=args.workers,
    )
    return build(
        args.metadata,
        args.output,
        filters=filters,
        download=download,
        cache_dir=args.cache_dir,
        overwrite=args.overwrite,
    )
