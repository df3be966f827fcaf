"""`predict.py` on a photo collection: images/s end to end next to the models alone, and 2 processes
against 1.

    python -m benchmarks.bench_predict --images ../shared/data/fashion_catalog/images \
        --caption_model outputs/catalog/caption --rating_model outputs/demo/rating --limit 2000
    python benchmarks/run.py --quick --only bench_predict   # tiny random models, a few photos

- end to end: `predict.py` as a user runs it (its own process, photos read and letterboxed in its
  DataLoader workers, Parquet parts written), on the first `--limit` photos; the figure is its own
  "predicted N photos in S s", which leaves out starting Python and loading the models;
- models alone: the same photos read and letterboxed beforehand, kept in memory as predict.py's
  batches, then only `predict_pixels` timed (normalisation, rating forward, caption beam search);
- 2 processes: `accelerate launch --num_processes 2` (CPU, one torch thread each) against one process
  with a thread per core.
The three alternate for `--rounds` rounds and the best round of each is kept.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `python benchmarks/bench_predict.py` from the repo root

import predict  # noqa: E402
from benchmarks.common import machine  # noqa: E402

PREDICTED = re.compile(r"predicted (\d+) photos in ([\d.]+) s")


def photo_csv(images: Path, limit: int | None, path: Path) -> int:
    """A predict.py CSV of the first `limit` photos that `predict.py --images` would read (its own
    listing, in its order); returns how many."""
    files = predict.folder_inputs(images).photos.files[:limit]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image"])
        writer.writerows(
            [os.path.relpath(images.resolve() / name, path.parent.resolve())] for name in files
        )
    return len(files)


def model_flags(models: dict[str, str]) -> list[str]:
    return [arg for task, folder in models.items() for arg in (f"--{task}_model", folder)]


def end_to_end(
    photos: Path, models, output: Path, processes: int, batch_size: int, num_beams: int
) -> dict:
    """predict.py in its own process(es); images/s as it reports them."""
    threads = 1 if processes > 1 else predict.available_cpus()
    args = ["--csv", str(photos), "--output", str(output), "--overwrite", "--batch_size",
            str(batch_size), "--num_beams", str(num_beams), *model_flags(models)]  # fmt: skip
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
              str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    command = (launch if processes > 1 else [sys.executable]) + [str(REPO / "predict.py"), *args]
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "ACCELERATE_USE_CPU": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"predict.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    count, seconds = PREDICTED.search(done.stdout + done.stderr).groups()
    return {"processes": processes, "threads_each": threads, "photos": int(count),
            "seconds": float(seconds), "images_per_second": int(count) / float(seconds),
            "wall_seconds_with_loading": round(wall, 1)}  # fmt: skip


def decoded_batches(photos: Path, models: dict, batch_size: int) -> list[dict]:
    """predict.py's own batches of the CSV's photos, read and letterboxed now (no workers)."""
    inputs = predict.csv_inputs(photos)
    dataset = predict.Photos(inputs, list(range(len(inputs.rows))), models, max_pixels=None)
    items = [dataset[j] for j in range(len(dataset))]
    return [predict.collate(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def models_alone(models: dict, batches: list[dict], num_beams: int) -> dict:
    torch.set_num_threads(predict.available_cpus())
    count = sum(len(b["pixels"][next(iter(models))]) for b in batches)
    start = time.perf_counter()
    for batch in batches:
        predict.predict_pixels(models, batch["pixels"], num_beams, torch.device("cpu"))
    seconds = time.perf_counter() - start
    return {"photos": count, "seconds": round(seconds, 2), "images_per_second": count / seconds,
            "threads": torch.get_num_threads()}  # fmt: skip


def measure(images: Path, models: dict[str, str], limit: int | None, rounds: int, batch_size: int,
            num_beams: int) -> dict:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos.csv"
        count = photo_csv(images, limit, photos)
        loaded = {t: predict.load_model(t, f, torch.device("cpu")) for t, f in models.items()}
        batches = decoded_batches(photos, loaded, batch_size)
        runs = {"end_to_end": [], "models_alone": [], "end_to_end_2_processes": []}
        for _ in range(rounds):  # alternating, so that a busy spell hits all three alike
            runs["end_to_end"].append(
                end_to_end(photos, models, tmp / "a.parquet", 1, batch_size, num_beams)
            )
            runs["models_alone"].append(models_alone(loaded, batches, num_beams))
            runs["end_to_end_2_processes"].append(
                end_to_end(photos, models, tmp / "b.parquet", 2, batch_size, num_beams)
            )
        best = {name: max(r, key=lambda x: x["images_per_second"]) for name, r in runs.items()}
        result = {
            "name": "predict.py images/s",
            "machine": machine(),
            "models": models,
            "photos": count,
            "batch_size": batch_size,
            "num_beams": num_beams,
            "rounds": runs,
            "best": best,
            "end_to_end_over_models_alone": best["end_to_end"]["images_per_second"]
            / best["models_alone"]["images_per_second"],
            "two_processes_over_one": best["end_to_end_2_processes"]["images_per_second"]
            / best["end_to_end"]["images_per_second"],
        }
    return result


def run(quick: bool) -> dict:
    """benchmarks/run.py: `--quick` on tiny random models and 8 generated photos; the real
    measurement needs trained models and photos, so it runs from the command line only."""
    if not quick:
        return {"skipped": "needs models and photos: python -m benchmarks.bench_predict --help"}
    from PIL import Image

    from .random_models import save_random_models

    with tempfile.TemporaryDirectory() as tmp:
        folders = save_random_models(Path(tmp) / "models")
        images = Path(tmp) / "photos"
        images.mkdir()
        for i in range(8):
            Image.new("RGB", (60, 80), (30 * i, 100, 200)).save(images / f"{i}.jpg")
        models = {task: str(folder) for task, folder in folders.items()}
        return measure(images, models, limit=None, rounds=1, batch_size=4, num_beams=2)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=Path, required=True, help="a folder of photos (read recursively)"
    )
    parser.add_argument("--rating_model", help="a rating model folder")
    parser.add_argument("--caption_model", help="a caption model folder")
    parser.add_argument(
        "--limit", type=int, default=2000, help="photos for the side-by-side figures"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds; the best is kept"
    )
    parser.add_argument("--batch_size", type=int, default=32, help="predict.py's default")
    parser.add_argument("--num_beams", type=int, default=3, help="predict.py's default")
    parser.add_argument("--output", type=Path, help="write the result here as JSON")
    args = parser.parse_args(argv)
    models = {
        t: f for t, f in (("rating", args.rating_model), ("caption", args.caption_model)) if f
    }
    if not models:
        parser.error("give --rating_model, --caption_model or both")
    result = measure(args.images, models, args.limit, args.rounds, args.batch_size, args.num_beams)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
