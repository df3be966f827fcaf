"""App: single-photo latency (p50, p95) of `app.predict`: decode + rating + caption, as a user waits.

Uses the models `make demo` trained (outputs/demo/rating_model, outputs/demo/caption_model) when they
exist; otherwise random-weight models with the training scripts' default architectures (a ResNet-50
rating model and a ViT-S/16 + attention-LSTM caption model, 224 px; the result says which). Weights do
not change the work a forward pass does; the random caption decoder is told never to say EOS, so it
runs to `max_length` where a trained one stops early: the slow case. `--quick` uses timm's tiny test models.
Latency is measured with torch's default CPU threads (one per core) and with one thread: on a CPU
that other jobs share, several threads per request can be many times slower (they wait on each other).
Each kind of model is saved and loaded back through `from_pretrained(..., trust_remote_code=True)`,
exactly as the app loads it.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import app
from hf_dataset.synthetic import COLOURS, DETAILS, GARMENTS, PATTERN_EFFECT, caption_for
from modeling import (
    ProductCaptionConfig,
    ProductCaptionModel,
    ProductCaptionProcessor,
    ProductImageProcessor,
    ProductRatingConfig,
    ProductRatingModel,
    build_caption_tokenizer,
)

from .common import machine

DEMO = app.HERE / "outputs" / "demo"


def build_models(folder: Path, quick: bool) -> None:
    """Random-weight models saved as training saves them: defaults, or tiny ones when `quick`."""
    size = 32 if quick else 224
    torch.manual_seed(0)
    rating = ProductRatingModel(
        ProductRatingConfig(backbone="test_resnet", image_size=size)
        if quick
        else ProductRatingConfig()  # resnet50, 224 px, head 256
    )
    rating.save_pretrained(folder / "rating")
    ProductImageProcessor.from_timm(rating.backbone, size).save_pretrained(folder / "rating")

    captions = [
        caption_for(*combo)
        for combo in itertools.product(COLOURS, PATTERN_EFFECT, GARMENTS, DETAILS)
    ]
    tokenizer = build_caption_tokenizer(captions, min_frequency=1)
    config = dict(vocab_size=len(tokenizer), image_size=size)
    if quick:
        config |= dict(encoder_name="test_vit", embed_dim=16, hidden_dim=32, attention_dim=16)
    caption = ProductCaptionModel(ProductCaptionConfig(**config))  # default: vit_small_patch16_224
    with torch.no_grad():  # the slow case: never stop early (random weights may pick EOS at once)
        caption.decoder.lm_head.bias[caption.config.eos_token_id] = -1e4
    caption.save_pretrained(folder / "caption")
    processor = ProductImageProcessor.from_timm(caption.encoder, size)
    ProductCaptionProcessor(processor, tokenizer).save_pretrained(folder / "caption")


def latencies(rating, caption, photo: Path, num_beams: int, runs: int) -> dict[str, np.ndarray]:
    for _ in range(2):  # warm-up: first calls allocate and pick kernels
        app.predict(photo, rating, caption, num_beams=num_beams)
    results = [
        app.predict(photo, rating, caption, num_beams=num_beams)["latency_ms"] for _ in range(runs)
    ]
    return {key: np.array([r[key] for r in results]) for key in results[0]}


def run(quick: bool = False) -> dict:
    runs = 5 if quick else 20
    photo = app.EXAMPLES[0]
    with tempfile.TemporaryDirectory() as tmp:
        trained = (
            not quick and (DEMO / "rating_model").is_dir() and (DEMO / "caption_model").is_dir()
        )
        if trained:
            folders = {"rating": DEMO / "rating_model", "caption": DEMO / "caption_model"}
            which = "trained demo models (outputs/demo)"
        else:
            build_models(Path(tmp), quick)
            folders = {"rating": Path(tmp) / "rating", "caption": Path(tmp) / "caption"}
            which = (
                "tiny random test models (test_resnet / test_vit, 32 px)"
                if quick
                else "random-weight models, default architectures (resnet50; vit_small_patch16_224 "
                f"+ LSTM {ProductCaptionConfig.hidden_dim}), 224 px"
            )
        start = time.perf_counter()
        rating = app.load_model("rating", folders["rating"])
        caption = app.load_model("caption", folders["caption"])
        load_s = time.perf_counter() - start
        threads = torch.get_num_threads()
        beam3 = latencies(rating, caption, photo, 3, runs)
        greedy = latencies(rating, caption, photo, 1, runs)
        torch.set_num_threads(1)  # `app.py --threads 1`: steadier when other jobs share the cores
        try:
            one_thread = latencies(rating, caption, photo, 3, runs)
        finally:
            torch.set_num_threads(threads)
        words = len(app.predict(photo, None, caption, num_beams=3)["caption"].split())

    def pct(values, q):
        return round(float(np.percentile(values, q)), 1)

    return {
        "name": "app: single-photo latency, rating + caption (app.predict)",
        "machine": machine(),
        "models": which,
        "photo": photo.name,
        "runs": runs,
        "load_models_s": round(load_s, 2),
        "total_ms_p50 (3 beams)": pct(beam3["total"], 50),
        "total_ms_p95 (3 beams)": pct(beam3["total"], 95),
        "decode_ms_p50": pct(beam3["decode"], 50),
        "rating_ms_p50": pct(beam3["rating"], 50),
        "caption_ms_p50 (3 beams)": pct(beam3["caption"], 50),
        "caption_words (3 beams)": words,
        "total_ms_p50 (greedy)": pct(greedy["total"], 50),
        "total_ms_p95 (greedy)": pct(greedy["total"], 95),
        "total_ms_p50 (3 beams, 1 thread)": pct(one_thread["total"], 50),
        "total_ms_p95 (3 beams, 1 thread)": pct(one_thread["total"], 95),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
