"""Predict star ratings and titles for many photos at once, into one Parquet file.

    accelerate launch predict.py --rating_model outputs/rating --caption_model outputs/caption \\
        --dataset data/synthetic --split test --output preds.parquet
    python predict.py --caption_model outputs/caption --images photos/ --output preds.parquet
    python predict.py --rating_model outputs/rating --csv photos.csv --output preds.parquet --resume
    accelerate launch --num_processes 4 predict.py ...   # the photos split between 4 processes

The input is one of a dataset folder (`python -m hf_dataset`, one split), a folder of photos (read
recursively) or a CSV with an `image` column of paths relative to the CSV (and optionally
`product_id`, `rating`, `caption`). Either model alone is fine. Photos are read and decoded in
DataLoader workers by the saved model's own image processor (`load_image`, as the app reads them); a
photo that cannot be used gets a row with its `error` instead of stopping the run.

Rows are written as they are predicted, in parts (`OUTPUT.parts/`, each written under a temporary
name and renamed), and merged into OUTPUT by the main process at the end (again written under a
temporary name, then renamed), so a run that is killed leaves no OUTPUT that looks complete: run it
again with `--resume` and only the photos without a row are predicted. Several processes
(`accelerate launch`) each take every N-th photo; each photo is predicted once. The output's
columns are listed below (and in docs/predict.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from accelerate import Accelerator
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoProcessor,
    HfArgumentParser,
)

from training.data import load_saved
from training.script import UserError, first_line, run_script

SCHEMA_HELP = """\
output columns (one row per photo, in input order):
  index          int64    the photo's position in the input (dataset row, CSV row, sorted file list)
  key            string   the stable row key --resume skips by: PRODUCT_ID#INDEX (dataset),
                          IMAGE#ROW (CSV), the path relative to the folder (--images)
  product_id     string   dataset and CSV inputs (null where the CSV has no product_id column)
  file           string   --images and --csv: the photo's path as given (relative)
  rating         float64  predicted stars in [1, 5] (with --rating_model; null for a bad photo)
  rating_low     float64  the rating's calibrated interval (90% by default: the model card says),
  rating_high    float64    null for a model saved before intervals existed
  caption        string   the predicted title (with --caption_model; null for a bad photo)
  caption_score  float64  the title's length-normalised log-probability (<= 0; higher: surer)
  error          string   why the photo could not be used (null when it could)
  true_rating    float64  the input's own rating, where it has a rating column (null: unrated)
  true_caption   string   the input's own caption, where it has a caption column
"""

MODEL_TYPES = {"rating": "product_rating", "caption": "product_caption"}
PROCESSOR_CLASSES = {"rating": AutoImageProcessor, "caption": AutoProcessor}
SETTINGS_FILE = "run.json"  # in the parts folder: what the parts were predicted with
PART_NAME = re.compile(r"run(\d+)-rank(\d+)-(\d+)\.parquet")


def available_cpus() -> int:
    """The cores this process may use (a container's or `taskset`'s share, not the machine's)."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass
class PredictArguments:
    output: str = field(
        metadata={"help": "the Parquet file to write (its parts go to OUTPUT.parts/)"}
    )
    rating_model: str | None = field(default=None, metadata={"help": "a rating model folder"})
    caption_model: str | None = field(default=None, metadata={"help": "a caption model folder"})
    dataset: str | None = field(
        default=None, metadata={"help": "input: a dataset folder from `python -m hf_dataset`"}
    )
    split: str = field(default="test", metadata={"help": "with --dataset: the split to predict"})
    images: str | None = field(
        default=None, metadata={"help": "input: a folder of photos (read recursively)"}
    )
    csv: str | None = field(
        default=None,
        metadata={
            "help": "input: a CSV with an `image` column of paths relative to the CSV (optional: "
            "product_id, rating, caption)"
        },
    )
    batch_size: int = field(default=32, metadata={"help": "photos per forward pass, per process"})
    num_workers: int = field(
        default_factory=lambda: min(4, available_cpus()),
        metadata={
            "help": "DataLoader processes reading photos, per process (0: none); "
            "default: 4, or fewer where fewer CPU cores are available"
        },
    )
    num_beams: int = field(default=3, metadata={"help": "caption beam size (1: greedy)"})
    max_pixels: int | None = field(
        default=None,
        metadata={"help": "refuse larger photos (default: the image processor's, 64 megapixels)"},
    )
    match_training_resolution: bool = field(
        default=True,
        metadata={
            "help": "shrink a photo larger than the model's training photos to their resolution "
            "first (the image processor's training_resolution); false: photos as they come"
        },
    )
    part_rows: int = field(
        default=2048,
        metadata={"help": "rows per part file: at most this many per process are lost to a kill"},
    )
    resume: bool = field(
        default=False, metadata={"help": "continue an unfinished run: skip rows already written"}
    )
    overwrite: bool = field(
        default=False, metadata={"help": "replace OUTPUT and any unfinished run's parts"}
    )


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def parse_args(argv=None) -> PredictArguments:
    parser = HfArgumentParser(
        PredictArguments, description=__doc__, epilog=SCHEMA_HELP, formatter_class=HelpFormatter
    )
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    given = [name for name in ("dataset", "images", "csv") if getattr(args, name)]
    if len(given) != 1:
        raise UserError(
            "give exactly one input: --dataset DIR, --images FOLDER or --csv FILE"
            + (f" (got {', '.join('--' + g for g in given)})" if given else "")
        )
    if not (args.rating_model or args.caption_model):
        raise UserError("give --rating_model, --caption_model or both")
    if args.resume and args.overwrite:
        raise UserError("--resume continues the earlier run and --overwrite deletes it: pick one")
    for name in ("batch_size", "num_beams", "part_rows"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.num_workers < 0:
        raise UserError(f"--num_workers must be 0 or more, got {args.num_workers}")
    return args


# ---------------------------------------------------------------- inputs


@dataclass
class Inputs:
    """The photos to predict: one identity row each (index, key, product_id/file, true values),
    and how worker processes read photo i (`photos.source(i)`: a path or encoded bytes;
    `photos.name(i)`: what error messages call it)."""

    rows: list[dict]
    photos: DatasetPhotos | FilePhotos
    columns: list[str]  # the identity and truth columns the output has, in SCHEMA_HELP's order


def read_inputs(args: PredictArguments) -> Inputs:
    if args.dataset:
        return dataset_inputs(Path(args.dataset), args.split)
    if args.images:
        return folder_inputs(Path(args.images))
    return csv_inputs(Path(args.csv))


def dataset_inputs(path: Path, split: str) -> Inputs:
    """A split's rows; photos stay encoded (`decode=False`) until a worker reads them."""
    loaded = load_saved(path)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise UserError(f"dataset {path} has no split {split!r} (splits: {', '.join(loaded)})")
        loaded = loaded[split]
    if "image" not in loaded.column_names:
        raise UserError(f"dataset {path} has no 'image' column ({', '.join(loaded.column_names)})")
    names = loaded.column_names
    product_ids = list(loaded["product_id"]) if "product_id" in names else [None] * len(loaded)
    rows = []
    for i, product_id in enumerate(product_ids):
        pid = None if product_id is None else str(product_id)
        rows.append({"index": i, "key": f"{pid}#{i}", "product_id": pid})
    truth = [c for c in ("rating", "caption") if c in names]
    for column in truth:
        for row, value in zip(rows, loaded[column], strict=True):
            row[f"true_{column}"] = value
    images = loaded.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
    photos = DatasetPhotos(images, split, product_ids)
    return Inputs(rows, photos, ["product_id"] + [f"true_{c}" for c in truth])


class DatasetPhotos:
    """Row i of a dataset's image column as encoded bytes (or its file), for `load_image`."""

    def __init__(self, images: datasets.Dataset, split: str, product_ids: list):
        self.images, self.split, self.product_ids = images, split, product_ids

    def name(self, i: int) -> str:
        return f"{self.split} row {i} ({self.product_ids[i]})"

    def source(self, i: int) -> str | bytes:
        image = self.images[i]["image"] or {}
        source = image.get("bytes") or image.get("path")
        if source is None:
            raise ValueError(f"{self.name(i)} has no image")
        return source


def folder_inputs(folder: Path) -> Inputs:
    """Every photo under `folder` (by extension, hidden files skipped), sorted by relative path."""
    if not folder.is_dir():
        raise UserError(f"images folder not found: {folder}")
    extensions = {ext.lower() for ext in Image.registered_extensions()}
    files = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in extensions
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not files:
        raise UserError(f"no photos in {folder} (no file with an image extension: .jpg, .png, ...)")
    rows = [{"index": i, "key": name, "file": name} for i, name in enumerate(files)]
    return Inputs(rows, FilePhotos(folder, files), ["file"])


class FilePhotos:
    """Photo i as a path under `root`, named by its path as given."""

    def __init__(self, root: Path, files: list[str]):
        self.root, self.files = root, files

    def name(self, i: int) -> str:
        return self.files[i]

    def source(self, i: int) -> str:
        return str(self.root / self.files[i])


def csv_inputs(path: Path) -> Inputs:
    """A CSV's rows: `image` (relative to the CSV), and `product_id`, `rating`, `caption` if there."""
    if not path.is_file():
        raise UserError(f"CSV file not found: {path}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not a readable CSV ({first_line(error)})") from None
    if "image" not in table.columns:
        raise UserError(f"{path} has no 'image' column (columns: {', '.join(table.columns)})")
    if table.empty:
        raise UserError(f"{path} has no rows")
    files = table["image"].tolist()
    rows = [{"index": i, "key": f"{name}#{i}", "file": name} for i, name in enumerate(files)]
    for i, row in enumerate(rows):
        row["product_id"] = table["product_id"][i] if "product_id" in table else None
        if "rating" in table:
            row["true_rating"] = parse_rating(table["rating"][i], path, i)
        if "caption" in table:
            row["true_caption"] = table["caption"][i] or None
    truth = [f"true_{c}" for c in ("rating", "caption") if c in table]
    return Inputs(rows, FilePhotos(path.parent, files), ["product_id", "file"] + truth)


def parse_rating(text: str, path: Path, row: int) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{path} row {row + 1}: rating {text!r} is not a number") from None


# ---------------------------------------------------------------- models


@dataclass
class Loaded:
    """A saved model on the device and its processor (`image_processor` is the processor itself for
    a rating model, the caption processor's image processor otherwise)."""

    task: str
    model: torch.nn.Module
    processor: object
    image_processor: object


def load_models(args: PredictArguments, device: torch.device) -> dict[str, Loaded]:
    folders = {"rating": args.rating_model, "caption": args.caption_model}
    models = {task: load_model(task, f, device) for task, f in folders.items() if f}
    for loaded in models.values():  # older processors have no training resolution to match
        loaded.image_processor.do_match_training_resolution = args.match_training_resolution
    return models


def load_model(task: str, folder: str, device: torch.device) -> Loaded:
    """The model and processor as the app loads them (Auto classes, the folder's own code); any
    failure is a `UserError`."""
    if not Path(folder).is_dir():
        raise UserError(f"--{task}_model: model folder not found: {folder}")
    try:
        model_type = AutoConfig.from_pretrained(folder, trust_remote_code=True).model_type
        if model_type != MODEL_TYPES[task]:
            raise UserError(
                f"--{task}_model: {folder} is a {model_type!r} model, not a {task} model"
            )
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval().to(device)
        processor = PROCESSOR_CLASSES[task].from_pretrained(folder, trust_remote_code=True)
    except UserError:
        raise
    except Exception as error:  # missing or corrupt files, a folder of something else
        raise UserError(f"could not load the {task} model {folder}: {first_line(error)}") from None
    image_processor = getattr(processor, "image_processor", processor)
    if not hasattr(image_processor, "load_image"):
        raise UserError(
            f"{folder} was saved by an older version of this project (its image processor has no "
            "load_image): save it again with `python -m model_cards resave`"
        )
    return Loaded(task, model, processor, image_processor)


# ---------------------------------------------------------------- photos -> tensors (workers)


class Photos(Dataset):
    """Item j: photo `positions[j]` read by the model's own `load_image` and letterboxed to uint8 for
    each model (`normalize` runs on the device), or the reason it could not be."""

    def __init__(self, inputs: Inputs, positions: list[int], models: dict[str, Loaded], max_pixels):
        self.photos, self.positions = inputs.photos, positions
        self.reader = next(iter(models.values())).image_processor
        self.processors = {task: m.image_processor for task, m in models.items()}
        self.settings = {  # two models with the same transform letterbox each photo once
            task: json.dumps(p.to_dict(), sort_keys=True) for task, p in self.processors.items()
        }
        self.limit = {} if max_pixels is None else {"max_pixels": max_pixels}

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j: int) -> dict:
        position = self.positions[j]
        name = self.photos.name(position)
        try:
            source = self.photos.source(position)
            image = self.reader.load_image(source, name=name, **self.limit)
            pixels, done = {}, {}
            for task, processor in self.processors.items():
                settings = self.settings[task]
                if settings not in done:
                    done[settings] = processor.eval_transform(normalize=False)(image)
                pixels[task] = done[settings]  # (3, S, S) uint8
        except ValueError as error:  # UnreadableImageError, which names the photo
            return {"position": position, "error": str(error) or f"{name}: unreadable"}
        except Exception as error:  # anything else one photo can cause: its row, not a crash
            reason = f"{type(error).__name__}: {first_line(error, 300)}"
            return {"position": position, "error": f"{name} could not be read ({reason})"}
        return {"position": position, "error": None, "pixels": pixels}


def collate(items: list[dict]) -> dict:
    """The batch's positions and errors, and each model's (B_good, 3, S, S) uint8 of good photos."""
    good = [item for item in items if item["error"] is None]
    pixels = {}
    if good:
        pixels = {
            task: torch.stack([i["pixels"][task] for i in good]) for task in good[0]["pixels"]
        }
    return {
        "positions": [item["position"] for item in items],
        "errors": [item["error"] for item in items],
        "pixels": pixels,
    }


# ---------------------------------------------------------------- prediction


@torch.inference_mode()
def predict_pixels(models: dict[str, Loaded], pixels: dict, num_beams: int, device) -> dict:
    """uint8 batches -> {"rating": [...], "rating_low": [...], "rating_high": [...], "caption": [...],
    "caption_score": [...]}."""
    out = {}
    if "rating" in models:
        m = models["rating"]
        x = m.image_processor.normalize(pixels["rating"].to(device))
        output = m.model(pixel_values=x)
        out["rating"] = output.predictions.float().tolist()  # (B,)
        if output.interval is None:  # a model saved before intervals existed
            out["rating_low"] = out["rating_high"] = [None] * len(out["rating"])
        else:
            out["rating_low"], out["rating_high"] = output.interval.float().T.tolist()  # (2, B)
    if "caption" in models:
        m = models["caption"]
        x = m.image_processor.normalize(pixels["caption"].to(device))
        generated = m.model.generate(
            pixel_values=x, num_beams=num_beams, output_scores=True, return_dict_in_generate=True
        )
        out["caption"] = m.processor.batch_decode(generated.sequences, skip_special_tokens=True)
        out["caption_score"] = caption_scores(m.model, generated).tolist()  # (B,)
    return out


def caption_scores(model, generated) -> torch.Tensor:
    """Each caption's mean log-probability per generated token, EOS included: beam search's own
    `sequences_scores` (at length_penalty 1), or the same from greedy search's per-step scores."""
    if getattr(generated, "sequences_scores", None) is not None:
        return generated.sequences_scores.float()
    log_probs = model.compute_transition_scores(
        generated.sequences, generated.scores, normalize_logits=True
    ).float()  # (B, L)
    tokens = generated.sequences[:, 1:]
    ended_before = (tokens == model.config.eos_token_id).long().cumsum(dim=1) - (
        tokens == model.config.eos_token_id
    ).long()
    counted = ended_before == 0  # up to and including the first EOS
    return (log_probs * counted).sum(dim=1) / counted.sum(dim=1).clamp(min=1)


def batch_rows(batch: dict, inputs: Inputs, predictions: dict) -> list[dict]:
    """The batch's output rows: identity, predictions for good photos, the error for bad ones."""
    rows = []
    columns = zip(*predictions.values(), strict=True)  # one tuple per good photo
    values = iter([dict(zip(predictions, v, strict=True)) for v in columns])
    for position, error in zip(batch["positions"], batch["errors"], strict=True):
        row = dict(inputs.rows[position], error=error)
        if error is None:
            row.update(next(values))
        rows.append(row)
    return rows


def output_schema(inputs: Inputs, tasks) -> pa.Schema:
    """The output's columns (SCHEMA_HELP), the same in every part."""
    types = {
        "product_id": pa.string(),
        "file": pa.string(),
        "true_rating": pa.float64(),
        "true_caption": pa.string(),
    }
    fields = [("index", pa.int64()), ("key", pa.string())]
    fields += [(c, types[c]) for c in inputs.columns if not c.startswith("true_")]
    if "rating" in tasks:
        fields += [(c, pa.float64()) for c in ("rating", "rating_low", "rating_high")]
    if "caption" in tasks:
        fields += [("caption", pa.string()), ("caption_score", pa.float64())]
    fields.append(("error", pa.string()))
    fields += [(c, types[c]) for c in inputs.columns if c.startswith("true_")]
    return pa.schema(fields)


# ---------------------------------------------------------------- parts on disk


def write_atomically(table: pa.Table, path: Path) -> None:
    """Write `table` to a hidden temporary name beside `path`, flush it to disk, then rename: a
    reader (or a resumed run) sees the whole file or nothing."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        pq.write_table(table, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def write_part(rows: list[dict], schema: pa.Schema, path: Path) -> None:
    write_atomically(pa.Table.from_pylist(rows, schema=schema), path)


def part_files(parts: Path) -> list[Path]:
    """Finished parts only: temporary files are hidden and never match PART_NAME."""
    if not parts.is_dir():
        return []
    return sorted(p for p in parts.iterdir() if PART_NAME.fullmatch(p.name))


def done_keys(parts: Path) -> set[str]:
    keys = set()
    for path in part_files(parts):
        keys.update(pq.read_table(path, columns=["key"]).column("key").to_pylist())
    return keys


def run_settings(args: PredictArguments) -> dict:
    """What decides the rows' values: a resumed run must have the same, or its rows would mix."""
    settings = {k: v for k, v in asdict(args).items() if k in ("split", "num_beams", "max_pixels")}
    for name in ("rating_model", "caption_model", "dataset", "images", "csv"):
        value = getattr(args, name)
        settings[name] = str(Path(value).resolve()) if value else None
    if not args.dataset:
        settings.pop("split")
    return settings


def prepare_output(args: PredictArguments, settings: dict, accelerator: Accelerator) -> Path:
    """Check OUTPUT and its parts folder against --resume / --overwrite; the parts folder, ready."""
    output = Path(args.output)
    parts = output.with_name(output.name + ".parts")
    unfinished = parts.is_dir() and (part_files(parts) or (parts / SETTINGS_FILE).is_file())
    if not args.overwrite:
        if output.exists() and not unfinished:
            raise UserError(
                f"{output} exists"
                + (" and is complete" if args.resume else "")
                + ": --overwrite to predict again"
            )
        if unfinished and not args.resume:
            raise UserError(
                f"{parts} holds an unfinished run's rows: --resume to continue it, "
                "--overwrite to start again"
            )
        if unfinished:
            check_settings(parts / SETTINGS_FILE, settings)
    accelerator.wait_for_everyone()  # every process has checked before anything is deleted
    if accelerator.is_main_process:
        if args.overwrite:
            shutil.rmtree(parts, ignore_errors=True)
            output.unlink(missing_ok=True)
        parts.mkdir(parents=True, exist_ok=True)
        if not (parts / SETTINGS_FILE).is_file():
            (parts / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return parts


def check_settings(path: Path, settings: dict) -> None:
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    changed = [k for k in sorted(set(settings) | set(earlier)) if settings.get(k) != earlier.get(k)]
    if changed:
        what = ", ".join(f"{k} {earlier.get(k)!r} -> {settings.get(k)!r}" for k in changed)
        raise UserError(
            f"--resume: the unfinished run used other settings ({what}); rerun with them, "
            "or --overwrite to start again"
        )


def merge_parts(parts: Path, output: Path, inputs: Inputs, schema: pa.Schema) -> pa.Table:
    """Every part -> OUTPUT, one row per photo in input order (main process only); the parts go.
    Rows are matched to today's input by key: a photo gone since an earlier run loses its row, and
    one whose position moved (a folder that gained files) gets its new `index`."""
    files = part_files(parts)
    tables = [pq.read_table(p, schema=schema) for p in files]
    frame = (pa.concat_tables(tables) if tables else schema.empty_table()).to_pandas()
    positions = {row["key"]: row["index"] for row in inputs.rows}
    frame = frame[frame["key"].isin(positions)].drop_duplicates("key")  # each key is written once
    missing = positions.keys() - set(frame["key"])
    if missing:
        raise UserError(
            f"{len(missing)} photos have no row in {parts} (e.g. {min(missing)!r}): "
            "run again with --resume"
        )
    frame = frame.assign(index=frame["key"].map(positions)).sort_values("index")
    merged = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    write_atomically(merged, output)
    shutil.rmtree(parts)
    return merged


# ---------------------------------------------------------------- the loop


def predict_shard(
    loader: DataLoader, inputs: Inputs, models, args, schema, name_part, accelerator
) -> int:
    """Predict this process's photos, writing a part every --part_rows rows; returns the row count."""
    rows, written, number = [], 0, 0
    bar = tqdm(
        total=len(loader.dataset),
        unit="image",
        desc="predicting",
        disable=not accelerator.is_local_main_process,
    )
    for batch in loader:
        predictions = {}
        if batch["pixels"]:
            predictions = predict_pixels(
                models, batch["pixels"], args.num_beams, accelerator.device
            )
        rows += batch_rows(batch, inputs, predictions)
        bar.update(len(batch["positions"]))
        if len(rows) >= args.part_rows:
            write_part(rows, schema, name_part(number))
            written, number, rows = written + len(rows), number + 1, []
    if rows:
        write_part(rows, schema, name_part(number))
        written += len(rows)
    bar.close()
    return written


def make_loader(
    inputs: Inputs, positions: list[int], models, args, pin_memory: bool = False
) -> DataLoader:
    return DataLoader(
        Photos(inputs, positions, models, args.max_pixels),
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
    )


def main(argv=None) -> Path:
    args = parse_args(argv)
    accelerator = Accelerator()
    log = accelerator.print
    if accelerator.num_processes > 1:
        log(f"predicting on {accelerator.num_processes} processes ({accelerator.distributed_type})")
    inputs = read_inputs(args)
    models = load_models(args, accelerator.device)
    if "rating" in models and models["rating"].model.config.interval is None:
        log("the rating model has no interval (saved before intervals existed): rating_low and "
            "rating_high stay empty")  # fmt: skip
    schema = output_schema(inputs, models)
    parts = prepare_output(args, run_settings(args), accelerator)

    done = done_keys(parts)
    earlier = [PART_NAME.fullmatch(p.name) for p in part_files(parts)]
    run = 1 + max((int(m.group(1)) for m in earlier), default=0)
    accelerator.wait_for_everyone()  # every process has listed the parts before any is written
    todo = [i for i, row in enumerate(inputs.rows) if row["key"] not in done]
    log(
        f"{len(inputs.rows)} photos"
        + (f", {len(inputs.rows) - len(todo)} already predicted (--resume)" if done else "")
        + f", {len(todo)} to predict with {', '.join(models)}"
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    loader = make_loader(
        inputs, todo[rank::world], models, args, pin_memory=accelerator.device.type == "cuda"
    )

    def name_part(number: int) -> Path:
        return parts / f"run{run:03d}-rank{rank}-{number:05d}.parquet"

    start = time.perf_counter()
    written = predict_shard(loader, inputs, models, args, schema, name_part, accelerator)
    counts = accelerator.gather(torch.tensor([written], device=accelerator.device)).tolist()
    seconds = time.perf_counter() - start  # until the last process is done (gather waits)
    log(
        f"predicted {sum(counts)} photos in {seconds:.1f} s ({sum(counts) / max(seconds, 1e-9):.1f} "
        "images/s)" + (f"; per process: {counts}" if world > 1 else "")
    )
    output = Path(args.output)
    if accelerator.is_main_process:
        merged = merge_parts(parts, output, inputs, schema)
        errors = merged.num_rows - merged.column("error").null_count
        log(f"wrote {output}: {merged.num_rows} rows, {errors} with an error")
    accelerator.wait_for_everyone()
    return output


if __name__ == "__main__":
    run_script(main)
