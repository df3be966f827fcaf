"""What a transformers user tries first, in a clean process where nothing of this repository is
importable: the standard tasks' pipelines, `generate()` with every usual option and a
`GenerationConfig`, and bf16 / fp16 weights, on saved model folders (`save_random_models`, the same
files the training scripts write)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from benchmarks.random_models import save_random_models

from .conftest import REPO_ROOT

PHOTO = REPO_ROOT / "examples" / "red-plain-dress-with-a-belt.jpg"

SCRIPT = """
import json, sys
import torch
from PIL import Image
from transformers import (AutoModel, AutoProcessor, GenerationConfig, LogitsProcessor,
                          LogitsProcessorList, pipeline)
from transformers.generation.streamers import BaseStreamer
# as on a machine without this repository: its packages cannot be imported (the venv has them)
for package in ("modeling", "serving", "training", "hf_dataset", "metrics", "model_cards"):
    assert package not in sys.modules
    sys.modules[package] = None  # `import modeling` now raises ImportError
rating_dir, caption_dir, photo = sys.argv[1:4]
out = {}

# 2. the standard tasks
rate = pipeline("image-classification", model=rating_dir, trust_remote_code=True,
                function_to_apply="none")
out["image_classification"] = rate(photo)
out["image_classification_batch"] = rate([photo, photo], batch_size=2)
for task in ("image-text-to-text", "image-to-text"):
    caption = pipeline(task, model=caption_dir, trust_remote_code=True)
    out[task] = caption(images=photo, text="")
    out[task + "_prompt"] = caption(images=photo, text="red")
    out[task + "_kwargs"] = caption(images=photo, text="", generate_kwargs={"max_new_tokens": 2})
own = pipeline(model=caption_dir, trust_remote_code=True, batch_size=2, device="cpu")
out["product_caption"] = own([photo, photo], generate_kwargs={"do_sample": True, "top_k": 3})
out["product_rating"] = pipeline(model=rating_dir, trust_remote_code=True)(photo)

# 1. generate() as transformers' generation
model = AutoModel.from_pretrained(caption_dir, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(caption_dir, trust_remote_code=True)
pixels = processor(images=[Image.open(photo)] * 2)["pixel_values"]
length = lambda ids: ids.shape[-1] - 1  # generated tokens
torch.manual_seed(0)
sampled = model.generate(pixels, do_sample=True, temperature=0.7, top_k=5, top_p=0.9)
out["sampling"] = sampled.shape[0]
out["num_return_sequences"] = model.generate(pixels, num_beams=3, num_return_sequences=3).shape[0]
out["max_length"] = length(model.generate(pixels, max_length=3))
out["min_new_tokens"] = int((model.generate(pixels, min_new_tokens=6)[:, 1:7] == 2).sum())
scores = model.generate(pixels, num_beams=2, output_scores=True, return_dict_in_generate=True)
out["output_scores"] = [len(scores.scores), list(scores.sequences_scores.shape)]
out["generation_config"] = length(model.generate(pixels, generation_config=GenerationConfig(
    max_new_tokens=2, bos_token_id=1, eos_token_id=2, pad_token_id=0)))
word = int(model.generate(pixels)[0, 1])
out["bad_words_ids"] = word in model.generate(pixels, bad_words_ids=[[word]])[:, 1:].tolist()[0]
out["no_repeat_ngram_size"] = model.generate(pixels, no_repeat_ngram_size=1)[0, 1:].tolist()
out["repetition_penalty"] = model.generate(pixels, repetition_penalty=1.5).shape[0]
out["length_penalty"] = model.generate(pixels, num_beams=3, length_penalty=0.5).shape[0]

class Ban(LogitsProcessor):
    def __call__(self, input_ids, scores):
        scores[:, word] = -float("inf")
        return scores
banned = model.generate(pixels, logits_processor=LogitsProcessorList([Ban()]))
out["logits_processor"] = word in banned[:, 1:].tolist()[0]

class Count(BaseStreamer):
    puts = 0
    def put(self, value): Count.puts += 1
    def end(self): pass
model.generate(pixels[:1], streamer=Count(), max_new_tokens=4, num_beams=1)
out["streamer_puts"] = Count.puts
# the saved generation_config.json: its defaults change what generate() and the pipeline do
out["before_generation_config_json"] = length(model.generate(pixels))
saved = model.generation_config
saved.max_new_tokens = 2
saved.save_pretrained(caption_dir)
reloaded = AutoModel.from_pretrained(caption_dir, trust_remote_code=True).eval()
out["model_generation_config"] = length(reloaded.generate(pixels))
caption = pipeline("image-text-to-text", model=caption_dir, trust_remote_code=True)
out["pipeline_generation_config"] = caption(images=photo, text="")[0]["generated_text"]

# 3. every dtype, loaded or through the pipeline
for dtype in (torch.bfloat16, torch.float16):
    name = str(dtype).split(".")[-1]
    loaded = AutoModel.from_pretrained(caption_dir, trust_remote_code=True, dtype=dtype).eval()
    out[name + "_generate"] = [str(loaded.dtype), loaded.generate(pixels).shape[0]]
    rating = AutoModel.from_pretrained(rating_dir, trust_remote_code=True, dtype=dtype)
    out[name + "_rating"] = str(rating(pixel_values=torch.rand(1, 3, 32, 32)).predictions.dtype)
    out[name + "_pipelines"] = [
        pipeline("image-classification", model=rating_dir, trust_remote_code=True,
                 dtype=dtype)(photo)[0]["label"],
        pipeline("image-text-to-text", model=caption_dir, trust_remote_code=True,
                 dtype=dtype)(images=photo, text="")[0]["generated_text"] is not None,
        type(pipeline(model=caption_dir, trust_remote_code=True, dtype=dtype)(photo)[0]).__name__,
    ]
print(json.dumps(out))
"""


DEMO = REPO_ROOT / "outputs" / "demo"


@pytest.mark.slow
@pytest.mark.parametrize("models", ["random", "demo"])
def test_the_transformers_interfaces_in_a_clean_process(models, tmp_path):
    if models == "random":
        folders = save_random_models(tmp_path / "models", initializer_range=0.5)
    elif (DEMO / "caption" / "model.safetensors").is_file():  # copies: the script writes to them
        folders = {kind: tmp_path / kind for kind in ("rating", "caption")}
        for kind, folder in folders.items():
            shutil.copytree(DEMO / kind, folder, ignore=shutil.ignore_patterns("checkpoint*"))
    else:
        pytest.skip("the make demo models are not there (outputs/demo)")
    script = tmp_path / "try_it.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(script), str(folders["rating"]), str(folders["caption"]), str(PHOTO)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])

    [answer] = out["image_classification"]
    assert answer["label"] == "rating" and 1.0 <= answer["score"] <= 5.0
    assert [a[0]["label"] for a in out["image_classification_batch"]] == ["rating", "rating"]
    for task in ("image-text-to-text", "image-to-text"):
        assert isinstance(out[task][0]["generated_text"], str)
        assert out[task + "_prompt"][0]["generated_text"].startswith("red")
        assert len(out[task + "_kwargs"][0]["generated_text"].split()) <= 2
    assert len(out["product_caption"]) == 2 and "generated_text" in out["product_caption"][0][0]
    assert 1.0 <= out["product_rating"]["rating"] <= 5.0

    assert out["sampling"] == 2 and out["num_return_sequences"] == 6
    assert out["max_length"] <= 2 and out["min_new_tokens"] == 0  # no EOS in the first 6
    assert out["output_scores"][1] == [2] and out["output_scores"][0] >= 1
    assert out["generation_config"] <= 2
    assert out["before_generation_config_json"] > 2 >= out["model_generation_config"]
    assert len(out["pipeline_generation_config"].split()) <= 2
    assert out["bad_words_ids"] is False and out["logits_processor"] is False
    words = [w for w in out["no_repeat_ngram_size"] if w not in (0, 2)]
    assert len(words) == len(set(words))  # no word twice
    assert out["repetition_penalty"] == 2 and out["length_penalty"] == 2
    assert out["streamer_puts"] >= 2  # the prompt, then each new token

    for name in ("bfloat16", "float16"):
        assert out[name + "_generate"] == [f"torch.{name}", 2]
        assert out[name + "_rating"] == "torch.float32"  # the bound head computes in fp32
        assert out[name + "_pipelines"] == ["rating", True, "dict"]
