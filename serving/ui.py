"""The Gradio page: one builder per tab over the prediction functions; `create_app` puts them together.

The Predict, Batch and Compare buttons are also API endpoints (`/predict`, `/batch`, `/compare`) for
`gradio_client`.
"""

from __future__ import annotations

import csv
import functools
import tempfile
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from .attention import attention_figure
from .images import EXAMPLES, MAX_MEGAPIXELS, InputError
from .models import (
    TASKS,
    CaptionModel,
    ModelCache,
    ModelError,
    RatingModel,
    load_model,
    missing_model_hint,
)
from .prediction import MAX_BEAMS, compare_models, predict, predict_batch
from .render import (
    latency_text,
    model_info,
    rating_histogram,
    stars_html,
    summarize_batch,
    summarize_comparison,
    thumbnail_caption,
)

MAX_FILE_SIZE = "200mb"  # per uploaded file (a zip of photos can be large)


def shown_in_page(fn):
    """A bad input or an unloadable model becomes a message in the page (gr.Error), not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InputError, ModelError) as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper


def beam_slider(visible: bool = True) -> gr.Slider:
    return gr.Slider(
        1, MAX_BEAMS, value=3, step=1, label="Caption beam size",
        info="1 = greedy; more beams search more titles (slower)", visible=visible,
    )  # fmt: skip


def photo_files(elem_id: str) -> gr.File:
    return gr.File(
        label="Product photos, or a .zip of them",
        file_count="multiple",
        type="filepath",
        elem_id=elem_id,
    )


def predict_tab(
    rating_model: RatingModel | None, caption_model: CaptionModel | None, max_pixels: int
):
    @shown_in_page
    def on_predict(image: dict | None, num_beams: float):
        # Called with preprocess=False: `image` is the upload's FileData, untouched (gradio has checked
        # that the path is one of its uploads), so that the model's loader does every check.
        if not image or not image.get("path"):
            raise InputError("no photo: upload, paste or take one first")
        result = predict(image["path"], rating_model, caption_model, num_beams, max_pixels)
        looked = result["attention"]
        figure = looked and attention_figure(
            looked["photo"], looked["words"], looked["weights"], looked["side"], columns=5
        )
        stars = stars_html(result["rating"])
        return result["rating"], result["caption"], stars, latency_text(result), figure

    with gr.Tab("Predict"), gr.Row():
        with gr.Column():
            image = gr.Image(
                label="Product photo",
                sources=["upload", "clipboard", "webcam"],
                type="filepath",
                image_mode=None,
                height=360,
                elem_id="photo",
            )
            beams = beam_slider(visible=caption_model is not None)
            button = gr.Button("Predict", variant="primary", elem_id="predict-button")
            if EXAMPLES:
                gr.Examples(
                    [[str(p)] for p in EXAMPLES],
                    inputs=[image],
                    label="Examples: synthetic products drawn for this app",
                    elem_id="examples",
                )
        with gr.Column():
            stars = gr.HTML(
                label="Rating (stars)", elem_id="rating-stars", visible=rating_model is not None
            )
            rating = gr.Number(label="Rating", visible=False)
            caption = gr.Textbox(
                label="Product title",
                elem_id="caption",
                interactive=False,
                visible=caption_model is not None,
            )
            latency = gr.Markdown(label="Latency", elem_id="latency")
            attention = gr.Plot(
                label="Where the model looked for each word",
                elem_id="attention",
                visible=caption_model is not None and caption_model.model.config.attention,
            )
    button.click(
        on_predict,
        inputs=[image, beams],
        outputs=[rating, caption, stars, latency, attention],
        api_name="predict",
        api_description="One photo -> (rating, caption, stars HTML, latency text, attention plot).",
        preprocess=False,  # gr.Image would open the file before the loader checks it
        concurrency_limit=2,
        concurrency_id="predict",
    )


def batch_tab(
    rating_model: RatingModel | None, caption_model: CaptionModel | None, max_pixels: int
):
    @shown_in_page
    def on_batch(files: list[str] | None, num_beams: float, progress=gr.Progress()):  # noqa: B008 (gradio fills it in)
        start, thumbnails = time.perf_counter(), []
        table = predict_batch(
            files, rating_model, caption_model, num_beams, max_pixels, progress, thumbnails
        )
        seconds = time.perf_counter() - start
        failed = int((table["error"] != "").sum())
        if failed:
            gr.Warning(f"{failed} of {len(table)} files skipped: see the error column")
        csv_path = Path(tempfile.mkdtemp(prefix="batch-")) / "predictions.csv"
        table.to_csv(csv_path, index=False, float_format="%.4f", quoting=csv.QUOTE_MINIMAL)
        histogram = rating_histogram(table["rating"]) if rating_model is not None else None
        gallery = [(image, thumbnail_caption(table.iloc[i])) for image, i in thumbnails]
        summary = summarize_batch(table, seconds)
        return summary, gallery, table.round({"rating": 2}), str(csv_path), histogram

    served = {"rating": rating_model, "caption": caption_model}
    columns = ["file"] + [t for t in TASKS if served[t] is not None] + ["error"]
    with gr.Tab("Batch"):
        files = photo_files("batch-files")
        beams = beam_slider(visible=caption_model is not None)
        button = gr.Button("Predict all", variant="primary")
        summary = gr.Markdown(label="Summary")
        gallery = gr.Gallery(
            label="Photos with their predictions", columns=6, height="auto", elem_id="batch-gallery"
        )
        table = gr.DataFrame(
            pd.DataFrame(columns=columns),
            label="Predictions",
            wrap=True,
            interactive=False,
            column_widths=[{"file": "30%", "rating": "8%"}.get(c, "31%") for c in columns],
        )
        with gr.Row():
            histogram = gr.Plot(label="Rating histogram", visible=rating_model is not None)
            csv_file = gr.File(label="Download the table (CSV)")
    button.click(
        on_batch,
        inputs=[files, beams],
        outputs=[summary, gallery, table, csv_file, histogram],
        api_name="batch",
        api_description="Photos or zips -> (summary, thumbnails, table file/rating/caption/error, CSV, histogram).",
        concurrency_limit=1,
        concurrency_id="heavy",  # batches and comparisons share one slot: each is many images
    )


def compare_tab(cache: ModelCache, rating_model, caption_model, max_pixels: int):
    @shown_in_page
    def on_compare(
        files,
        rating_a,
        rating_b,
        caption_a,
        caption_b,
        num_beams,
        progress=gr.Progress(),  # noqa: B008
    ):
        chosen = {"rating A": rating_a, "rating B": rating_b, "caption A": caption_a,
                  "caption B": caption_b}  # fmt: skip
        models = {
            name: cache.get(name.split()[0], source.strip())
            for name, source in chosen.items()
            if source and source.strip()
        }
        table = compare_models(files, models, num_beams, max_pixels, progress)
        return summarize_comparison(table), table.round(3)

    with gr.Tab("Compare"):
        gr.Markdown(
            "Two rating models and/or two caption models on the same photos. Type a model folder or "
            "a Hub id; each is loaded once and kept. Leave a box empty to skip it."
        )
        files = photo_files("compare-files")
        with gr.Row():
            rating_a = gr.Textbox(
                label="Rating model A", value=rating_model.source if rating_model else ""
            )
            rating_b = gr.Textbox(label="Rating model B", placeholder="folder or Hub id")
        with gr.Row():
            caption_a = gr.Textbox(
                label="Caption model A", value=caption_model.source if caption_model else ""
            )
            caption_b = gr.Textbox(label="Caption model B", placeholder="folder or Hub id")
        beams = beam_slider()
        button = gr.Button("Compare", variant="primary")
        summary = gr.Markdown(label="Summary")
        table = gr.DataFrame(
            pd.DataFrame(columns=["file", "rating A", "rating B", "caption A", "caption B"]),
            label="Side by side",
            wrap=True,
            interactive=False,
        )
    button.click(
        on_compare,
        inputs=[files, rating_a, rating_b, caption_a, caption_b, beams],
        outputs=[summary, table],
        api_name="compare",
        api_description="Photos + up to four model folders/ids -> (summary, side-by-side table).",
        concurrency_limit=1,
        concurrency_id="heavy",
    )


def info_tab(served: dict[str, RatingModel | CaptionModel | None]):
    with gr.Tab("Model info"):
        for task, model in served.items():
            if model is None:
                continue
            info = model_info(model)
            with gr.Tab(f"{task.capitalize()} model"):
                gr.Markdown(f"`{model.source}`")
                if info["metrics"]:
                    gr.DataFrame(
                        pd.DataFrame(info["metrics"], columns=["metric", "value"]),
                        label="Evaluation (eval_results.json)",
                        interactive=False,
                    )
                gr.Markdown(
                    info["card"] or "This model folder has no model card (README.md).",
                    elem_classes=["model-card"],
                )
                if info["plots"]:  # the plots the card does not show itself
                    gr.Gallery(
                        [(str(p), p.stem.replace("_", " ")) for p in info["plots"]],
                        label="More plots",
                        columns=3,
                        object_fit="contain",
                        elem_classes=["model-plots"],
                    )


def create_app(
    rating_model: RatingModel | str | Path | None = None,
    caption_model: CaptionModel | str | Path | None = None,
    max_megapixels: float = MAX_MEGAPIXELS,
) -> gr.Blocks:
    """The Gradio Blocks app for these models (loaded objects, or folders / Hub ids to load)."""
    if isinstance(rating_model, str | Path):
        rating_model = load_model("rating", rating_model)
    if isinstance(caption_model, str | Path):
        caption_model = load_model("caption", caption_model)
    if rating_model is None and caption_model is None:
        raise ModelError("the app needs at least one model")
    max_pixels = int(max_megapixels * 10**6)
    served = {"rating": rating_model, "caption": caption_model}
    status = " · ".join(
        f"{task.capitalize()} model: `{m.source}`" if m else f"⚠️ {missing_model_hint(task)}"
        for task, m in served.items()
    )
    with gr.Blocks(title="Fashion product rating & captioning", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Fashion product rating & captioning\n"
            "From a photo of a fashion product, predict its **star rating** and write its **product title**.\n\n"
            + status
        )
        predict_tab(rating_model, caption_model, max_pixels)
        batch_tab(rating_model, caption_model, max_pixels)
        cache = ModelCache([m for m in served.values() if m is not None])
        compare_tab(cache, rating_model, caption_model, max_pixels)
        info_tab(served)
    demo.queue(max_size=256, default_concurrency_limit=2)
    return demo


def launch(demo: gr.Blocks, host: str, port: int, share: bool = False, **kwargs):
    """Serve the app; `kwargs` go to `Blocks.launch` (tests pass `prevent_thread_lock=True`)."""
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=MAX_FILE_SIZE,
        theme=gr.themes.Soft(),
        **kwargs,
    )
