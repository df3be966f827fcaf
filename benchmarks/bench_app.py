"""App: single-photo latency (p50, p95) of `serving.predict`: decode + rating + caption, as a user waits.

Uses the models `make demo` trained (outputs/demo/rating, outputs/demo/caption) when they
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

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import serving.models
from modeling import ProductCaptionConfig

from .common import machine
from .random_models import save_random_models

DEMO = serving.models.HERE / "outputs" / "demo"
# Where `make demo` writes its models (the Makefile's `--output_dir $(OUT)/...`).
DEMO_MODELS = {"rating": DEMO / "rating", "caption": DEMO / "caption"}


def latencies(rating, caption, photo: Path, num_beams: int, runs: int) -> dict[str, np.ndarray]:
    for _ in range(2):  # warm-up: first calls allocate and pick kernels
        serving.predict(photo, rating, caption, num_beams=num_beams)
    results = [
        serving.predict(photo, rating, caption, num_beams=num_beams)["latency_ms"]
        for _ in range(runs)
    ]
    return {key: np.array([r[key] for r in results]) for key in results[0]}


def run(quick: bool = False) -> dict:
    runs = 5 if quick else 20
    photo = serving.EXAMPLES[0]
    with tempfile.TemporaryDirectory() as tmp:
        if not quick and all(folder.is_dir() for folder in DEMO_MODELS.values()):
            folders = DEMO_MODELS
            which = "trained demo models (outputs/demo)"
        else:
            folders = save_random_models(tmp, tiny=quick, never_stop=True)
            which = (
                "tiny random test models (test_resnet / test_vit, 32 px)"
                if quick
                else "random-weight models, default architectures (resnet50; vit_small_patch16_224 "
                f"+ LSTM {ProductCaptionConfig.hidden_dim}), 224 px"
            )
        start = time.perf_counter()
        rating = serving.load_model("rating", folders["rating"])
        caption = serving.load_model("caption", folders["caption"])
        load_s = time.perf_counter() - start
        threads = torch.get_num_threads()
        beam3 = latencies(rating, caption, photo, 3, runs)
        greedy = latencies(rating, caption, photo, 1, runs)
        torch.set_num_threads(1)  # `app.py --threads 1`: steadier when other jobs share the cores
        try:
            one_thread = latencies(rating, caption, photo, 3, runs)
        finally:
            torch.set_num_threads(threads)
        words = len(serving.predict(photo, None, caption, num_beams=3)["caption"].split())

    def pct(values, q):
        return round(float(np.percentile(values, q)), 1)

    return {
        "name": "app: single-photo latency, rating + caption (serving.predict)",
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
