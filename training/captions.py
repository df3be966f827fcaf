"""The caption model's data pieces, shared by train_caption.py, evaluate_models.py and the studies:
the checked dataset, the rows and their collate, the encoder-feature cache, and caption generation."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import datasets
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .data import SPLITS, drop_empty_captions, load_splits
from .feature_engines import DEFAULT_ENGINE, choose_engine, open_engine
from .script import UserError

CACHE_VERSION = 2  # bump when the cached feature layout changes (2: a ViT's prefix tokens left out)


def load_caption_dataset(
    path: str | Path, splits: Sequence[str] = SPLITS
) -> tuple[datasets.DatasetDict, dict]:
    """The dataset's splits, rows with empty captions dropped (and counted per split)."""
    dataset = load_splits(path, ["image", "caption"], splits)
    dropped = drop_empty_captions(dataset)
    if any(len(dataset[s]) == 0 for s in ("train", "validation") if s in splits):
        raise UserError(f"dataset {path} has no captioned train or validation rows")
    return dataset, dropped


class CaptionRows(Dataset):
    """Row i of a split: the model input (cached encoder features or an image tensor) and its tokens.

    Cached features are the model's `encoder_hidden_states` (B, 1 + N, D), or with `frozen=True` its
    `frozen_features` (the input of encoder blocks that are trained). With `flipped` (the same rows'
    features of the mirrored photos) each row is drawn from one or the other at random."""

    def __init__(
        self, token_ids, features=None, images=None, transform=None, frozen=False, flipped=None
    ):
        self.token_ids, self.features, self.images, self.transform = (
            token_ids,
            features,
            images,
            transform,
        )
        self.flipped = flipped
        self.feature_key = "frozen_features" if frozen else "encoder_hidden_states"

    def __len__(self):
        return len(self.token_ids)

    def __getitem__(self, i):
        if self.features is not None:
            mirrored = self.flipped is not None and torch.rand(()) < 0.5
            inputs = {self.feature_key: (self.flipped if mirrored else self.features)[i].float()}
        else:
            inputs = {"pixel_values": self.transform(self.images[i]["image"])}  # (3, S, S)
        return {**inputs, "input_ids": self.token_ids[i], "index": i}


MODEL_INPUTS = ("pixel_values", "encoder_hidden_states", "frozen_features")


def make_collate(pad_token_id: int):
    def collate(rows):
        batch = {k: torch.stack([r[k] for r in rows]) for k in rows[0] if k in MODEL_INPUTS}
        ids = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(r["input_ids"]) for r in rows],
            batch_first=True,
            padding_value=pad_token_id,
        )
        batch["input_ids"] = ids
        batch["attention_mask"] = (ids != pad_token_id).long()
        batch["labels"] = ids.masked_fill(ids == pad_token_id, -100)
        batch["index"] = torch.tensor([r["index"] for r in rows])
        return batch

    return collate


# ---------------------------------------------------------------- the encoder-feature cache


def feature_cache_key(
    model,
    image_processor,
    split: datasets.Dataset,
    pretrained,
    precision: str = "no",
    hflip: bool = False,
    engine: str = "torch",
) -> str:
    """Everything the cached features depend on: encoder, its weights, the transform (`hflip`: the
    photos mirrored), the engine and precision it ran in and the data. Changing a field or the
    hashing makes every existing cache stale."""
    weights = hashlib.sha256()
    for name, tensor in sorted(model.encoder.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    key = {
        "version": CACHE_VERSION,
        "encoder": model.config.encoder_name,
        "train_last_blocks": model.config.train_last_blocks,  # what the cache holds
        "pretrained": str(pretrained),
        "weights": weights.hexdigest(),
        "image_processor": image_processor.to_dict(),
        "precision": precision,
        "dataset": split._fingerprint,
        "rows": len(split),
    }
    if hflip:  # only then, so the caches written before this field keep their keys
        key["hflip"] = True
    if engine != "torch":  # likewise; ONNX Runtime computes in fp32 whatever the run's precision
        key["engine"], key["precision"] = engine, "no"
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


def image_batches(split, image_processor, batch_size: int) -> DataLoader:
    """A split's photos, decoded and resized in this process (eval transform): (B, 3, S, S) batches."""
    rows = CaptionRows(
        [[]] * len(split),
        images=split.select_columns(["image"]),
        transform=image_processor.eval_transform(),
    )
    return DataLoader(
        rows,
        batch_size=batch_size,
        collate_fn=lambda r: torch.stack([x["pixel_values"] for x in r]),
    )


@torch.no_grad()  # not inference_mode: the channels_last copies of trained layers must stay trainable
def encode_split(
    encode,
    image_processor,
    split,
    batch_size,
    desc,
    hflip: bool = False,
) -> torch.Tensor:
    """A split's float16 frozen features, eval transform (`hflip`: then mirrored left to right):
    (rows, 1 + N, D) encoder features, or the input of the trained blocks with `train_last_blocks`.
    `encode` is `model.frozen_features` in an engine (`feature_engines.open_engine`)."""
    loader = image_batches(split, image_processor, batch_size)
    chunks = []
    for pixels in tqdm(loader, desc=desc):
        if hflip:
            pixels = pixels.flip(-1)
        chunks.append(encode(pixels).half().cpu())
    return torch.cat(chunks)


def default_cache_dir() -> Path:
    from huggingface_hub.constants import HF_HOME

    return Path(HF_HOME) / "product_caption_features"


def cached_features(
    model,
    image_processor,
    dataset,
    accelerator,
    pretrained,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 128,
    splits: Sequence[str] = SPLITS,
    hflip_train: bool = False,
    engine: str = DEFAULT_ENGINE,
) -> dict[str, torch.Tensor]:
    """Encoder features of each split, from the disk cache or computed once (on the main process).

    `cache_dir` defaults to `$HF_HOME/product_caption_features`; `batch_size` is the encoding batch;
    `hflip_train` adds `train_hflip`, the train photos mirrored (augmentation for cached features);
    `engine` runs the frozen layers (`feature_engines.ENGINES`; torch where it cannot run)."""
    cache_dir = Path(cache_dir or default_cache_dir())
    engine = choose_engine(engine, accelerator.device, log=accelerator.print)

    def path_of(name: str, split: str, hflip: bool) -> Path:
        key = feature_cache_key(
            model, image_processor, dataset[split], pretrained, accelerator.mixed_precision,
            hflip, engine,
        )  # fmt: skip
        return cache_dir / f"{name}-{key}.safetensors"

    jobs = [(split, split, False) for split in splits]
    if hflip_train:
        jobs.append(("train_hflip", "train", True))
    features = {}
    with contextlib.ExitStack() as stack:
        encode = None  # the engine, opened at the first split that is not cached yet
        for name, split, hflip in jobs:
            path = path_of(name, split, hflip)
            with accelerator.main_process_first():
                if not path.is_file():
                    if not accelerator.is_main_process:
                        raise RuntimeError(
                            f"feature cache {path} was not written by the main process"
                        )
                    if encode is None:
                        model.eval()
                        # bf16 autocast on a CPU with AVX-512 BF16: 2.4x fp32 (BENCHMARKS.md)
                        # the machine's other processes wait for this one: their cores are its
                        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
                        opened = open_engine(
                            model, image_processor.image_size, engine, accelerator.device,
                            accelerator.autocast, log=accelerator.print,
                            threads=torch.get_num_threads() * local_processes,
                        )  # fmt: skip
                        engine, encode = stack.enter_context(opened)
                        path = path_of(name, split, hflip)  # torch's own, if the export failed
                if path.is_file():
                    accelerator.print(f"{name}: encoder features from cache {path}")
                else:
                    tensor = encode_split(
                        encode, image_processor, dataset[split], batch_size,
                        f"encoding {name} ({engine})", hflip,
                    )  # fmt: skip
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(f".tmp{os.getpid()}")
                    save_file({"features": tensor.contiguous()}, tmp)
                    os.replace(tmp, path)  # a half-written cache file never has the final name
                features[name] = load_file(path)["features"]
    return features


@torch.no_grad()
def pooled_features(model, features, splits=("train", "test"), batch_size=512) -> dict:
    """Each split's pooled encoder feature (rows, D, fp32) from its cached features, for the
    retrieval baseline. Taken before training, they are the pretrained encoder's even where its last
    blocks are trained (`train_last_blocks`: the cache holds their input). Under autocast where the
    caller opens it."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    pooled = {}
    for split in splits:
        chunks = features[split].split(batch_size)
        pooled[split] = torch.cat(
            [model.memory_from_frozen(c.float().to(device))[:, 0].float().cpu() for c in chunks]
        )
    model.train(was_training)
    return pooled


# ---------------------------------------------------------------- generation and loss


@torch.no_grad()
def generate_captions(
    model, loader, accelerator, processor, desc="generating", **generate_kwargs
) -> list[str]:
    """Generated captions for every row of `loader`'s split, in row order, by `model.generate`
    with `generate_kwargs` (by default the model's `generation_config`).

    With an `accelerator` (a prepared loader) they are gathered from all processes; with None the
    loop runs in this process, on the model's device."""
    model.eval()
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    device = next(unwrapped.parameters()).device
    show = accelerator.is_local_main_process if accelerator is not None else True
    captions, indices = [], []
    for batch in tqdm(loader, desc=desc, disable=not show, leave=False):
        inputs = {k: batch[k].to(device) for k in MODEL_INPUTS if k in batch}
        with accelerator.autocast() if accelerator is not None else contextlib.nullcontext():
            ids = unwrapped.generate(**inputs, **generate_kwargs)
        index = batch["index"]
        if accelerator is not None:
            pad = unwrapped.config.pad_token_id
            ids = accelerator.pad_across_processes(ids, dim=1, pad_index=pad)
            ids, index = accelerator.gather_for_metrics((ids, index))
        captions += processor.batch_decode(ids.cpu())
        indices += index.cpu().tolist()
    order = sorted(range(len(indices)), key=indices.__getitem__)
    return [captions[i] for i in order]


@torch.no_grad()
def mean_loss(model, loader, accelerator) -> float:
    """The mean of the batches' losses over every process.

    Each process has one scalar per batch: `gather` (not `gather_for_metrics`, whose truncation of
    the last batch's padding counts samples, not processes) collects one value per process."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        batch = {k: v for k, v in batch.items() if k != "index"}
        loss = model(**batch).loss
        losses = accelerator.gather(loss.detach()[None])  # (num_processes,)
        total, count = total + losses.sum().item(), count + losses.numel()
    return total / max(1, count)
