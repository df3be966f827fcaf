"""The Gradio page: one builder per tab over the prediction functions; `create_app` puts them together.

Each button runs twice over the same code, once for the page and once for the API:

- the page's event (private): a bad input or an unloadable model becomes a message in the tab that
  stays until the next action (no toast that fades, no red "Error" pills on empty outputs);
- the API endpoint (`/predict`, `/batch`, `/compare`, on a hidden trigger) raises it as `gr.Error`,
  an `AppError` for `gradio_client`. `/predict` returns the data (rating, interval, title, scores);
  the stars, the Markdown and the maps image only with `presentation=True`.
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr
import pandas as pd
from PIL import Image

from .attention import compose_maps, word_grids
from .cards import model_info
from .images import EXAMPLES, MAX_MEGAPIXELS, InputError, PhotoError
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
    error_html,
    latency_text,
    rating_histogram,
    rating_words,
    shown_source,
    stars_html,
    summarize_batch,
    summarize_comparison,
    synthetic_banner,
    thumbnail_caption,
    trained_on,
)

MAX_FILE_SIZE = "200mb"  # per uploaded file (a zip of photos can be large)
PAGE_ERRORS = (InputError, ModelError)

CSS = """
#synthetic-banner { background: #fef3c7; border: 1px solid #f59e0b; color: #78350f;
  border-radius: 8px; padding: .6rem .9rem; }
.app-error { background: #fee2e2; border: 1px solid #ef4444; color: #7f1d1d; border-radius: 8px;
  padding: .6rem .9rem; }
.dark #synthetic-banner { background: #451a03; color: #fde68a; }
.dark .app-error { background: #450a0a; color: #fecaca; }
/* Batch: each thumbnail with its full file name and prediction below it, the gallery as tall as
   its rows (gradio's default overlays a one-line, cut caption and keeps a fixed minimum height) */
#batch-gallery .grid-wrap { min-height: 0; max-height: none; overflow-y: visible; }
#batch-gallery .fixed-height { min-height: 0; max-height: none; }
#batch-gallery .grid-container { grid-template-rows: none; grid-auto-rows: auto; }
#batch-gallery .thumbnail-item { aspect-ratio: auto; height: auto; display: flex;
  flex-direction: column; overflow: visible; }
#batch-gallery .thumbnail-item img { height: 140px; object-fit: contain; }
#batch-gallery .caption-label { position: static; max-width: none; white-space: normal;
  overflow-wrap: anywhere; text-overflow: clip; border: none; border-radius: 0; opacity: 1; }
"""

# On a phone the result column sits below the photo and the button: bring it into view on a tap,
# where the progress and then the answer appear (on a wide screen it is beside the button already).
SCROLL_TO_RESULT_JS = """() => {
  const result = document.getElementById('predict-result');
  if (result && result.getBoundingClientRect().top > window.innerHeight * 0.6)
    result.scrollIntoView({behavior: 'smooth', block: 'start'});
}"""


class Scratch:
    """Files handed to the page (CSV downloads, the maps image) in one temporary folder; gradio
    copies each into its own cache, so folders older than `max_age_s` go on the next write."""

    def __init__(self, max_age_s: float = 3600):
        self.root = Path(tempfile.mkdtemp(prefix="fashion-app-"))
        self.max_age_s = max_age_s

    def path(self, name: str) -> Path:
        cutoff = time.time() - self.max_age_s
        for folder in self.root.iterdir():
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.root)) / name


def raised_for_api(fn):
    """The API's side: a bad input or an unloadable model is a gr.Error (gradio_client's AppError)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PAGE_ERRORS as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper


def shown_in_page(fn, blanks: tuple):
    """The page's side: `fn`'s outputs after a hidden error box; on a bad input the box shows the
    message (until the next action replaces it) and the other outputs get `blanks`, so nothing
    stale stays beside it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            outputs = fn(*args, **kwargs)
        except PAGE_ERRORS as error:
            return (gr.update(value=error_html(str(error)), visible=True), *blanks)
        return (gr.update(value="", visible=False), *outputs)

    return wrapper


def page_and_api(button, fn, inputs, outputs, error_box, blanks, api_name, **kwargs):
    """`button` runs `fn` for the page (errors in `error_box`); `/api_name` runs it for clients."""
    button.click(
        shown_in_page(fn, blanks),
        inputs=inputs,
        outputs=[error_box, *outputs],
        api_visibility="private",
        **kwargs,
    )
    gr.Button(visible=False).click(
        raised_for_api(fn), inputs=inputs, outputs=outputs, api_name=api_name, **kwargs
    )


def hide_on(component_events, error_box):
    """A new upload hides the last error: it belonged to the previous input."""
    for event in component_events:
        event(lambda: gr.update(visible=False), outputs=error_box, api_visibility="private",
              queue=False)  # fmt: skip


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


def error_box(elem_id: str) -> gr.HTML:
    return gr.HTML(visible=False, elem_id=elem_id)


SHOWN_NAMES = {"rating_low": "low", "rating_high": "high"}  # the interval beside the rating


def styled(table: pd.DataFrame, differences: tuple[str, ...] = ()):
    """The table as shown: ratings with one decimal, differences with two, empty cells blank; the
    data behind it (what the API returns) keeps every digit."""
    table = table.rename(columns=SHOWN_NAMES)
    ratings = [c for c in table if c.startswith("rating") or c in SHOWN_NAMES.values()]
    formats = {c: "{:.1f}" for c in ratings if c not in differences}
    formats |= {c: "{:+.2f}" for c in differences if c in table}
    return table.style.format(formats, na_rep="")


def column_widths(columns: list[str]) -> list[str]:
    """Narrow number columns, the text ones sharing the rest (the error column included)."""
    narrow = [c for c in columns if c.startswith("rating") or c in SHOWN_NAMES.values()]
    wide = len(columns) - len(narrow)
    return [("7%" if c in narrow else f"{(100 - 7 * len(narrow)) // wide}%") for c in columns]


# ---------------------------------------------------------------------------------------------------
# Predict


CHEAP_MAP_MS = 50  # a rating map that costs less is drawn for every photo, without asking


def rating_map_cost(rating_model) -> float | None:
    """The rating map's time on this machine (ms, the fastest of up to three calls on a grey photo
    after a warm-up: a busy moment at start-up should not hide a cheap map; a call over
    CHEAP_MAP_MS ends the timing, so a large model's map adds little to start-up), or None when
    the model cannot draw one."""
    if rating_model is None or not hasattr(rating_model.model, "rating_map"):
        return None
    grey = Image.new("RGB", (256, 256), (128, 128, 128))
    rating_model.rating_map(grey)  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        rating_model.rating_map(grey)
        times.append((time.perf_counter() - start) * 1000)
        if times[-1] >= CHEAP_MAP_MS:
            break
    return min(times)


class Predictor:
    """The Predict tab's work, shared by the page and `/predict`: the prediction, the maps image
    (drawn and encoded here, so its time is in the latency line) and the texts."""

    def __init__(self, rating_model, caption_model, max_pixels: int):
        self.rating_model, self.caption_model = rating_model, caption_model
        self.max_pixels = max_pixels

    def run(self, path: str | None, num_beams, rating_map: bool, draw: bool = True) -> dict:
        """`predict`, then (`draw`) the maps image, timed: the person waits for it too."""
        if not path:
            raise InputError("no photo: upload, paste or take one first")
        result = predict(path, self.rating_model, self.caption_model, num_beams, self.max_pixels,
                         rating_map=bool(rating_map))  # fmt: skip
        start = time.perf_counter()
        result["maps_jpeg"] = self.draw(result) if draw else None
        drawn_ms = (time.perf_counter() - start) * 1000 if result["maps_jpeg"] else None
        result["latency_ms"]["maps"] = drawn_ms
        result["texts"] = self.texts(result, drawn_ms)
        return result

    @staticmethod
    def draw(result: dict) -> bytes | None:
        """The composed maps as JPEG bytes: the rating's occlusion map first (when asked), then one
        panel per word of the title (as generated, after the repetition guard)."""
        looked = result["attention"]
        if looked is None:
            return None
        maps = [] if result["rating_map"] is None else [("why this rating", result["rating_map"])]
        if looked["weights"] is not None:
            maps += list(zip(looked["words"], word_grids(looked["weights"]), strict=True))
        buffer = io.BytesIO()
        compose_maps(looked["photo"], maps).save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()

    def texts(self, result: dict, drawn_ms: float | None) -> dict:
        rating, caption = self.rating_model, self.caption_model
        texts = {"stars_html": "", "rating_words": "", "caption_note": ""}
        if result["rating"] is not None:
            texts["rating_words"] = rating_words(
                result["rating"], result["interval"], result["coverage"],
                rating.no_interval_reason, rating.model.config.max_rating,
            )  # fmt: skip
            texts["stars_html"] = stars_html(
                result["rating"], texts["rating_words"], trained_on("rating", rating.training)
            )
        if result["caption"] is not None:
            note = trained_on("caption", caption.training)
            if result["caption_score"] is not None:
                sure = math.exp(result["caption_score"])
                note += f" Its words had {sure:.0%} probability on average (geometric mean)."
            texts["caption_note"] = note
        texts["latency"] = latency_text(result, drawn_ms)
        return texts

    def data(self, result: dict, presentation: bool) -> dict:
        """What `/predict` returns: the data, and the presentation only when asked."""
        models = {"rating": self.rating_model, "caption": self.caption_model}
        out = {
            "rating": result["rating"],
            "interval": result["interval"],
            "coverage": result["coverage"],
            "caption": result["caption"],
            "caption_score": result["caption_score"],
            "words": result["words"],
            "latency_ms": {k: v for k, v in result["latency_ms"].items() if v is not None},
            "models": {
                task: {
                    "source": m.source,
                    "trained_on": m.training.name,
                    "synthetic": m.training.synthetic,
                }
                for task, m in models.items()
                if m is not None
            },  # fmt: skip
        }
        if result["rating"] is not None and result["interval"] is None:
            out["no_interval"] = self.rating_model.no_interval_reason
        if presentation:
            jpeg = result["maps_jpeg"]
            out["presentation"] = {
                **result["texts"],
                "maps": jpeg and "data:image/jpeg;base64," + base64.b64encode(jpeg).decode(),
            }
        return out


def predict_tab(rating_model, caption_model, max_pixels: int, scratch: Scratch):
    predictor = Predictor(rating_model, caption_model, max_pixels)
    map_ms = rating_map_cost(rating_model)
    can_map = map_ms is not None
    always_map = can_map and map_ms < CHEAP_MAP_MS  # then it is drawn for every photo
    attention = caption_model is not None and bool(caption_model.model.config.attention)
    blanks = ("", "", "", "", None)  # stars, title, its note, latency, maps

    def on_page(image: dict | None, num_beams: float, why: bool):
        # preprocess=False: `image` is the upload's FileData, untouched (gradio has checked that the
        # path is one of its uploads), so that the model's loader does every check
        try:
            result = predictor.run((image or {}).get("path"), num_beams, why or always_map)
        except PhotoError as error:  # the unreadable photo goes too: no broken image beside it
            return gr.update(value=error_html(str(error)), visible=True), *blanks, None
        except PAGE_ERRORS as error:
            return gr.update(value=error_html(str(error)), visible=True), *blanks, gr.update()
        maps = None
        if result["maps_jpeg"]:
            maps = scratch.path("maps.jpg")
            maps.write_bytes(result["maps_jpeg"])
        texts = result["texts"]
        return (gr.update(value="", visible=False), texts["stars_html"], result["caption"] or "",
                texts["caption_note"], texts["latency"], maps and str(maps), gr.update())  # fmt: skip

    @raised_for_api
    def on_api(
        image: dict | None, num_beams: float = 3, rating_map: bool = False,
        presentation: bool = False,
    ) -> dict:  # fmt: skip
        """One photo -> {rating, interval, coverage, caption, caption_score, words, latency_ms,
        models}; with presentation=True also the stars HTML, the texts and the maps image."""
        result = predictor.run((image or {}).get("path"), num_beams, rating_map, presentation)
        return predictor.data(result, bool(presentation))

    with gr.Tab("Predict"):
        with gr.Row():
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
                why = gr.Checkbox(
                    value=False,
                    label=f"Also show why this rating (an occlusion map: about {map_ms or 0:.0f} ms more)",
                    visible=can_map and not always_map,
                    elem_id="why-rating",
                )
                button = gr.Button("Predict", variant="primary", elem_id="predict-button")
            with gr.Column(elem_id="predict-result"):
                error = error_box("predict-error")
                stars = gr.HTML(elem_id="rating-stars", visible=rating_model is not None)
                caption = gr.Textbox(
                    label="Product title",
                    elem_id="caption",
                    interactive=False,
                    visible=caption_model is not None,
                )
                caption_note = gr.Markdown(elem_id="caption-note")
                latency = gr.Markdown(elem_id="latency")
                maps_title = (
                    "**Where the models looked**: why this rating (occlusion), then each word of the title"
                    if can_map
                    else "**Where the model looked** for each word of the title"
                )
                # a Markdown title, not the image's label: gradio lays that over the image's top row
                gr.Markdown(maps_title, visible=attention or can_map, elem_id="attention-title")
                maps = gr.Image(
                    show_label=False,
                    type="filepath",
                    interactive=False,
                    elem_id="attention",
                    visible=attention or can_map,
                    buttons=["download", "fullscreen"],
                )
        if EXAMPLES:  # below both columns: on a phone the result comes right after the button
            gr.Examples(
                [[str(p)] for p in EXAMPLES],
                inputs=[image],
                label="Examples: synthetic products drawn for this app",
                elem_id="examples",
            )
        presentation = gr.Checkbox(value=False, visible=False, label="presentation")
        prediction = gr.JSON(visible=False, label="prediction")
        outputs = [stars, caption, caption_note, latency, maps]
        common = {"preprocess": False, "concurrency_limit": 2, "concurrency_id": "predict"}
        button.click(
            on_page,
            inputs=[image, beams, why],
            outputs=[error, *outputs, image],
            api_visibility="private",
            show_progress_on=outputs,
            **common,
        )
        button.click(None, js=SCROLL_TO_RESULT_JS, api_visibility="private", queue=False)
        gr.Button(visible=False).click(
            on_api,
            inputs=[image, beams, why, presentation],
            outputs=[prediction],
            api_name="predict",
            **common,
        )
        hide_on([image.upload, image.clear], error)


# ---------------------------------------------------------------------------------------------------
# Batch and Compare


def batch_tab(rating_model, caption_model, max_pixels: int, scratch: Scratch):
    served = {"rating": rating_model, "caption": caption_model}

    def on_batch(files: list[str] | None, num_beams: float, progress=gr.Progress()):  # noqa: B008 (gradio fills it in)
        start, thumbnails = time.perf_counter(), []
        table = predict_batch(
            files, rating_model, caption_model, num_beams, max_pixels, progress, thumbnails
        )
        seconds = time.perf_counter() - start
        csv_path = scratch.path("predictions.csv")
        table.to_csv(csv_path, index=False, float_format="%.4f", quoting=csv.QUOTE_MINIMAL)
        histogram = rating_histogram(table["rating"]) if rating_model is not None else None
        gallery = [(image, thumbnail_caption(table.iloc[i])) for image, i in thumbnails]
        summary = summarize_batch(table, seconds, served)
        return summary, gallery, styled(table), str(csv_path), histogram

    columns = ["file"] + [t for t in TASKS if served[t] is not None] + ["error"]
    if rating_model is not None and rating_model.coverage is not None:
        columns[2:2] = list(SHOWN_NAMES.values())
    with gr.Tab("Batch"):
        files = photo_files("batch-files")
        beams = beam_slider(visible=caption_model is not None)
        button = gr.Button("Predict all", variant="primary", elem_id="batch-button")
        error = error_box("batch-error")
        summary = gr.Markdown(label="Summary", elem_id="batch-summary")
        gallery = gr.Gallery(
            label="Photos with their predictions",
            columns=6,
            height="auto",
            object_fit="contain",
            elem_id="batch-gallery",
        )
        table = gr.DataFrame(
            pd.DataFrame(columns=columns),
            label="Predictions",
            wrap=True,
            interactive=False,
            column_widths=column_widths(columns),
            elem_id="batch-table",
        )
        with gr.Row():
            histogram = gr.Plot(label="Rating histogram", visible=rating_model is not None)
            csv_file = gr.File(label="Download the table (CSV)", elem_id="batch-csv")
        page_and_api(
            button, on_batch, [files, beams], [summary, gallery, table, csv_file, histogram],
            error, ("", None, pd.DataFrame(columns=columns), None, None), "batch",
            api_description="Photos or zips -> (summary, thumbnails, table, CSV, histogram).",
            concurrency_limit=1, concurrency_id="heavy",  # batches and comparisons: many images each
        )  # fmt: skip
        hide_on([files.upload, files.clear], error)


COMPARE_EMPTY = ["file", "rating A", "rating B", "rating B - A", "caption A", "caption B",
                 "same caption", "error"]  # fmt: skip


def compare_tab(cache: ModelCache, rating_model, caption_model, max_pixels: int, scratch: Scratch):
    def on_compare(
        files: list[str] | None,
        rating_a: str | None = None,
        rating_b: str | None = None,
        caption_a: str | None = None,
        caption_b: str | None = None,
        num_beams: float = 3,
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
        csv_path = scratch.path("comparison.csv")
        table.to_csv(csv_path, index=False, float_format="%.4f", quoting=csv.QUOTE_MINIMAL)
        return summarize_comparison(table), styled(table, ("rating B - A",)), str(csv_path)

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
            rating_b = gr.Textbox(
                label="Rating model B", placeholder="folder or Hub id", elem_id="rating-b"
            )
        with gr.Row():
            caption_a = gr.Textbox(
                label="Caption model A", value=caption_model.source if caption_model else ""
            )
            caption_b = gr.Textbox(label="Caption model B", placeholder="folder or Hub id")
        beams = beam_slider()
        button = gr.Button("Compare", variant="primary", elem_id="compare-button")
        error = error_box("compare-error")
        summary = gr.Markdown(label="Summary", elem_id="compare-summary")
        table = gr.DataFrame(
            pd.DataFrame(columns=COMPARE_EMPTY),
            label="Side by side",
            wrap=True,
            interactive=False,
            max_height=2000,  # every row on the page, not a scrolling window of a few
            elem_id="compare-table",
        )
        csv_file = gr.File(label="Download the table (CSV)", elem_id="compare-csv")
        page_and_api(
            button, on_compare, [files, rating_a, rating_b, caption_a, caption_b, beams],
            [summary, table, csv_file], error, ("", pd.DataFrame(columns=COMPARE_EMPTY), None),
            "compare",
            api_description="Photos + up to four model folders/ids -> (summary, side-by-side table, CSV).",
            concurrency_limit=1, concurrency_id="heavy",
        )  # fmt: skip
        hide_on([files.upload, files.clear], error)


# ---------------------------------------------------------------------------------------------------
# Model info


def info_tab(served: dict[str, RatingModel | CaptionModel | None]):
    with gr.Tab("Model info"):
        for task, model in served.items():
            if model is None:
                continue
            info = model_info(model)
            with gr.Tab(f"{task.capitalize()} model"):
                gr.Markdown(
                    f"`{shown_source(model.source)}`, trained on **{info['training'].describe()}**."
                )
                if info["metrics"]:
                    gr.DataFrame(
                        pd.DataFrame(info["metrics"], columns=["metric", "value"]),
                        label="Test results",
                        interactive=False,
                        max_height=2000,
                        elem_classes=["model-metrics"],
                    )
                if info["raw"] is not None:
                    with gr.Accordion(
                        "Everything in eval_results.json (validation, best checkpoint, "
                        "throughput, settings)",
                        open=False,
                    ):
                        gr.Code(json.dumps(info["raw"], indent=2), language="json")
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
    status = "  \n".join(
        f"{task.capitalize()} model `{shown_source(m.source)}`, trained on {m.training.describe()}."
        if m
        else f"⚠️ {missing_model_hint(task)}"
        for task, m in served.items()
    )
    scratch = Scratch()
    with gr.Blocks(title="Fashion product rating & captioning", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Fashion product rating & captioning\n"
            "From a photo of a fashion product, predict its **star rating** and write its **product title**.\n\n"
            + status
        )
        banner = synthetic_banner(served)
        if banner:  # above the tabs: on screen whichever tab is open
            gr.HTML(banner, elem_id="synthetic-banner-block")
        predict_tab(rating_model, caption_model, max_pixels, scratch)
        batch_tab(rating_model, caption_model, max_pixels, scratch)
        cache = ModelCache([m for m in served.values() if m is not None])
        compare_tab(cache, rating_model, caption_model, max_pixels, scratch)
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
        css=CSS,
        **kwargs,
    )
