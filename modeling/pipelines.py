"""`pipeline()` for both families: custom pipeline code saved beside every model and named in its
`config.json` (`custom_pipelines`), so that with nothing of this repository installed

    from transformers import pipeline
    rate = pipeline(model="outputs/demo/rating", trust_remote_code=True)
    rate(["a.jpg", pil_image], batch_size=16)   # [{"rating": 4.21, "interval": [3.8, 4.6],
                                                #   "coverage": 0.9}, ...]
    rate("a.jpg", explain=True)                 # + "map": where the photo moved the rating
    caption = pipeline(model="outputs/demo/caption", trust_remote_code=True)
    caption("a.jpg", num_beams=3)               # [{"generated_text": "red striped t-shirt"}]

The standard tasks load the same folders: `pipeline("image-classification", model=folder,
trust_remote_code=True, function_to_apply="none")` gives `[{"label": "rating", "score": 4.21}]`, and
`pipeline("image-text-to-text", ...)(images="a.jpg", text="")` a title (`text` is a prompt to
continue: "red" gives a title starting with it).

Inputs are paths, URLs, bytes or PIL images, one or a list; photos are read by the image processor's
`load_image`, as in the app, so both give the same outputs for the same photo.
"""

from __future__ import annotations

import httpx
import torch
from PIL import Image
from transformers import Pipeline

from .image_processing import load_image


def read_photo(image: str | bytes | Image.Image, timeout: float | None = None) -> Image.Image:
    """A path, URL, bytes or PIL image -> RGB, through the image processor's one loader."""
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        response = httpx.get(image, timeout=timeout or 30.0, follow_redirects=True)
        response.raise_for_status()
        return load_image(response.content, name=image)
    return load_image(image)


class ProductRatingPipeline(Pipeline):
    """Photos -> `{"rating": float, "interval": [low, high], "coverage": float}` each: the predicted
    star rating in [1, 5] and its calibrated interval (a model saved before intervals existed gives
    the rating alone). `explain=True` adds `"map"`: an (S, S) float array in [0, 1] over the
    processor's letterboxed square: how far each patch moves the rating (`ProductRatingModel.rating_map`)."""

    _load_image_processor = True
    _load_processor = False
    _load_tokenizer = False
    _load_feature_extractor = False

    def _sanitize_parameters(self, timeout: float | None = None, explain: bool | None = None):
        return {"timeout": timeout}, {"explain": bool(explain)}, {}

    def preprocess(self, image, timeout: float | None = None) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.image_processor(read_photo(image, timeout))["pixel_values"]}

    def _forward(self, inputs: dict[str, torch.Tensor], explain: bool = False) -> dict:
        output = self.model(pixel_values=inputs["pixel_values"])
        outputs = {"predictions": output.predictions}
        if output.interval is not None:
            outputs["interval"] = output.interval  # (B, 2)
        if explain:  # a backward pass: only on request (the pipeline runs under no_grad)
            outputs["map"] = self.model.rating_map(inputs["pixel_values"])  # (B, S, S)
        return outputs

    def postprocess(self, outputs: dict[str, torch.Tensor]) -> dict:
        result = {"rating": outputs["predictions"].item()}
        if "interval" in outputs:
            result["interval"] = outputs["interval"].reshape(2).float().tolist()
            result["coverage"] = self.model.config.interval["coverage"]
        if "map" in outputs:
            result["map"] = outputs["map"].reshape(outputs["map"].shape[-2:]).float().cpu().numpy()
        return result


class ProductCaptionPipeline(Pipeline):
    """Photos -> `[{"generated_text": title}]` each, by the model's `generate()` with its
    `generation_config.json`, overridden by `num_beams`, `length_penalty`, `max_new_tokens` or any
    `generate_kwargs` (`do_sample`, `no_repeat_ngram_size`, `num_return_sequences`, ...)."""

    _load_processor = True
    _load_image_processor = False
    _load_tokenizer = False
    _load_feature_extractor = False

    def _sanitize_parameters(
        self,
        num_beams: int | None = None,
        length_penalty: float | None = None,
        max_new_tokens: int | None = None,
        generate_kwargs: dict | None = None,
        timeout: float | None = None,
    ):
        named = {"num_beams": num_beams, "length_penalty": length_penalty,
                 "max_new_tokens": max_new_tokens}  # fmt: skip
        generate = {**(generate_kwargs or {}), **{k: v for k, v in named.items() if v is not None}}
        return {"timeout": timeout}, generate, {}

    def preprocess(self, image, timeout: float | None = None) -> dict[str, torch.Tensor]:
        photo = read_photo(image, timeout)
        return {"pixel_values": self.processor(images=photo)["pixel_values"]}

    def _forward(self, inputs: dict[str, torch.Tensor], **generate) -> dict[str, torch.Tensor]:
        return {"ids": self.model.generate(pixel_values=inputs["pixel_values"], **generate)}

    def postprocess(self, outputs: dict[str, torch.Tensor]) -> list[dict[str, str]]:
        texts = self.processor.batch_decode(outputs["ids"], skip_special_tokens=True)
        return [{"generated_text": text} for text in texts]


PIPELINES = {"product_rating": ("product-rating", ProductRatingPipeline),
             "product_caption": ("product-caption", ProductCaptionPipeline)}  # fmt: skip


# the transformers task whose Auto class also loads each family, with trust_remote_code
TASK_AUTO_CLASSES = {"product_rating": "AutoModelForImageClassification",
                     "product_caption": "AutoModelForImageTextToText"}  # fmt: skip


def task_auto_map(model) -> dict:
    """The `config.json` `auto_map` entry for the family's standard task: `pipeline("image-
    classification")` / `pipeline("image-text-to-text")` on a saved folder then find its code."""
    cls = type(model)
    return {
        TASK_AUTO_CLASSES[
            model.config.model_type
        ]: f"{cls.__module__.split('.')[-1]}.{cls.__name__}"
    }


def custom_pipelines(model_type: str) -> dict:
    """The `config.json` entry that names the family's pipeline for `pipeline(model=folder)`; this
    file is saved beside the model because the model's code imports it."""
    task, pipeline_class = PIPELINES[model_type]
    impl = f"{__name__.split('.')[-1]}.{pipeline_class.__name__}"
    return {task: {"impl": impl, "pt": ["AutoModel"], "tf": [], "type": "image"}}
