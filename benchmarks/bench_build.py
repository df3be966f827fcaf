"""Dataset build throughput: the amazon source downloading from a loopback HTTP server.

`python -m benchmarks.bench_build [--quick]` builds a dataset from N synthetic metadata records whose
images are served by a real HTTP server on 127.0.0.1 (realistic product photos: 1000-1500 px, textured,
~100-300 KB like Amazon's `hi_res`), first with an empty cache (download + verify + resize + encode +
write) and then again from the warm cache (a resumed or repeated build). The network here is free,
so this is the CPU ceiling of the pipeline: on the real internet, latency and bandwidth come on top.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hf_dataset import amazon
from hf_dataset.download import DownloadConfig, process_image
from tests.image_server import ImageServer, Reply

NUM_DISTINCT = 12  # distinct photos; every URL is unique, so each one is downloaded and processed


def product_photo(seed: int) -> bytes:
    """A textured product-like photo, 1000-1500 px a side, JPEG q90: sized like Amazon's hi_res."""
    rng = np.random.default_rng(seed)
    width, height = (int(v) for v in rng.integers(1000, 1501, size=2))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.full((height, width, 3), 248.0, dtype=np.float32)  # shop-white background
    inside = ((x - width / 2) / (width * 0.32)) ** 2 + ((y - height / 2) / (height * 0.42)) ** 2 < 1
    colour = rng.uniform(30, 220, size=3).astype(np.float32)
    weave = 18 * np.sin(x / rng.uniform(2, 6)) * np.cos(y / rng.uniform(2, 6))  # fabric texture
    shade = 40 * (y / height - 0.5)
    noise = rng.normal(0, 6, size=(height, width))
    for c in range(3):
        image[..., c] = np.where(inside, colour[c] + weave + shade + noise, image[..., c])
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(quick: bool = False, workers: int = 16) -> dict:
    """Measure the build; returns the figures (images/s, sizes, machine)."""
    num_products = 60 if quick else 400
    photos = [product_photo(seed) for seed in range(NUM_DISTINCT)]
    # Single-thread cost of verifying, resizing and re-encoding one photo (no network, no dataset).
    start = time.perf_counter()
    for data in photos:
        process_image(data, max_side=384)
    process_ms = 1000 * (time.perf_counter() - start) / len(photos)

    with ImageServer() as server, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        metadata = tmp / "meta.jsonl"
        with open(metadata, "w") as file:
            for i in range(num_products):
                path = f"/photo/{i}.jpg"
                server.routes[path] = [Reply(body=photos[i % NUM_DISTINCT])]
                record = {
                    "parent_asin": f"B{i:09d}",
                    "title": f"Benchmark product {i}",
                    "average_rating": 1 + (i % 41) / 10,
                    "rating_number": 10 + i,
                    "store": "Bench",
                    "images": [{"variant": "MAIN", "hi_res": server.url(path), "large": None}],
                }
                file.write(json.dumps(record) + "\n")
        config = DownloadConfig(workers=workers, timeout=30, retries=0)
        timings = {}
        for name, output in (("cold", tmp / "cold"), ("warm", tmp / "warm")):
            start = time.perf_counter()
            dataset = amazon.build(metadata, output, download=config, cache_dir=tmp / "cache")
            timings[name] = time.perf_counter() - start
        stored = sum(f.stat().st_size for f in (tmp / "cold").rglob("*.arrow"))
        kept = sum(len(split) for split in dataset.values())
        assert kept == num_products, f"only {kept} of {num_products} images were kept"
        fetched = sum(server.requests.values())

    return {
        "benchmark": "dataset build (amazon source, loopback HTTP server)",
        "images": num_products,
        "workers": workers,
        "images_per_second_cold": round(num_products / timings["cold"], 1),
        "images_per_second_warm_cache": round(num_products / timings["warm"], 1),
        "seconds_cold": round(timings["cold"], 2),
        "seconds_warm_cache": round(timings["warm"], 2),
        "process_ms_per_image_1_thread": round(process_ms, 1),
        "source_kb_per_image": round(sum(map(len, photos)) / len(photos) / 1024, 1),
        "stored_kb_per_image": round(stored / num_products / 1024, 1),
        "http_requests": fetched,
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "python": platform.python_version(),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 images instead of 400")
    parser.add_argument("--workers", type=int, default=16, help="download threads (default: 16)")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, workers=args.workers), indent=2))


if __name__ == "__main__":
    main()
