"""`pipeline()` for both families from a saved folder alone, and `python -m model_cards resave`.

The pipelines run in a clean process where this repository's packages cannot be imported, on paths,
a URL served from 127.0.0.1 and PIL images, one at a time and in batches, and must agree with the
app (`serving.predict`) on the same photos: the same loader, the same processor, the same model.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import serving
from benchmarks.random_models import save_random_models

from .conftest import REPO_ROOT
from .image_server import ImageServer, Reply

CAPTIONS = ["red striped t-shirt with a pocket", "blue plain dress with buttons",
            "black checked hoodie with a star logo"]  # fmt: skip
BLOCK_OUR_PACKAGES = textwrap.dedent(
    """
    import sys
    for name in ("modeling", "training", "serving", "metrics", "hf_dataset", "model_cards"):
        sys.modules[name] = None  # `import modeling` now raises ImportError
    """
)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    return save_random_models(
        tmp_path_factory.mktemp("models"), captions=CAPTIONS, initializer_range=1.0
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """An example photo, a 16-bit PNG and an EXIF-rotated JPEG: what the loader must get right."""
    folder = tmp_path_factory.mktemp("photos")
    shutil.copy(serving.EXAMPLES[0], folder / "example.jpg")
    ramp = np.tile(np.linspace(0, 65535, 64), (48, 1)).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "gray16.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(serving.EXAMPLES[1]).save(folder / "rotated.jpg", exif=exif)
    return sorted(folder.iterdir())


def _clean_run(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", BLOCK_OUR_PACKAGES + textwrap.dedent(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_pipelines_from_a_saved_folder_agree_with_the_app(model_dirs, photos, tmp_path):
    with ImageServer() as server:
        server.routes["/photo.jpg"] = [Reply(body=photos[0].read_bytes())]
        url = server.url("/photo.jpg")
        result = _clean_run(
            f"""
            import json
            from PIL import Image
            from transformers import pipeline
            paths = {[str(p) for p in photos]!r}
            rate = pipeline(model={str(model_dirs["rating"])!r}, trust_remote_code=True)
            caption = pipeline(model={str(model_dirs["caption"])!r}, trust_remote_code=True)
            out = {{
                "one": rate(paths[0]),
                "batch": rate(paths + [{url!r}], batch_size=2),
                "pil": rate(Image.open(paths[0])),
                "explained": rate(paths[:2], batch_size=2, explain=True),
                "greedy": caption(paths, batch_size=2),
                "beam": [caption(p, num_beams=3) for p in paths],
                "url": caption({url!r}),
                "class": type(rate).__name__,
            }}
            for row in out["explained"]:
                row["map"] = [list(row["map"].shape), float(row["map"].min()), float(row["map"].max())]
            print(json.dumps(out))
            """,
            tmp_path,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["class"] == "ProductRatingPipeline"
    assert isinstance(out["one"], dict) and isinstance(out["batch"], list)  # as transformers' do

    rating_model = serving.load_model("rating", model_dirs["rating"])
    caption_model = serving.load_model("caption", model_dirs["caption"])
    app = [serving.predict(p, rating_model, caption_model, num_beams=1) for p in photos]
    app_beam = [serving.predict(p, None, caption_model, num_beams=3)["caption"] for p in photos]
    ratings = [row["rating"] for row in out["batch"]]
    assert ratings[:-1] == pytest.approx([a["rating"] for a in app], abs=1e-5)
    assert ratings[-1] == pytest.approx(app[0]["rating"], abs=1e-5)  # the URL serves photo 0
    assert out["one"]["rating"] == out["pil"]["rating"] == pytest.approx(app[0]["rating"], abs=1e-5)
    assert len(set(np.round(ratings, 4))) > 1  # different photos, different ratings
    # every rating has its calibrated interval; `explain` adds the map over the letterboxed square
    with torch.no_grad():
        pixels = rating_model.processor([rating_model.load_image(str(p)) for p in photos])
        output = rating_model.model(**pixels)
    for row, interval in zip(out["batch"], output.interval.tolist(), strict=False):
        assert row["interval"] == pytest.approx(interval, abs=1e-5) and row["coverage"] == 0.9
        assert row["interval"][0] <= row["rating"] <= row["interval"][1]
    side = rating_model.model.config.image_size
    for row, plain in zip(out["explained"], out["batch"], strict=False):
        assert row["rating"] == pytest.approx(plain["rating"], abs=1e-5)
        assert row["map"] == [[side, side], pytest.approx(row["map"][1]), 1.0]
        assert 0.0 <= row["map"][1] < 1.0
    assert [c[0]["generated_text"] for c in out["greedy"]] == [a["caption"] for a in app]
    assert [c[0]["generated_text"] for c in out["beam"]] == app_beam
    assert out["url"][0]["generated_text"] == app[0]["caption"]


def _age(folder: Path) -> None:
    """Make `folder` look saved before pipelines existed: no pipeline code or config entry, and an
    image processor without `load_image`."""
    (folder / "pipelines.py").unlink()
    config = json.loads((folder / "config.json").read_text())
    del config["custom_pipelines"]
    (folder / "config.json").write_text(json.dumps(config))
    code = (folder / "image_processing.py").read_text()
    (folder / "image_processing.py").write_text(
        code.replace("    load_image = staticmethod", "    # ")
    )
    for model_code in folder.glob("modeling_*.py"):
        code = model_code.read_text().replace(
            "from .pipelines import custom_pipelines, task_auto_map\n", ""
        )
        model_code.write_text(code)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["rating", "caption"])
def test_resave_brings_an_old_folder_up_to_date(model_dirs, tmp_path, task):
    folder = tmp_path / task
    shutil.copytree(model_dirs[task], folder)
    (folder / "README.md").write_text("# my card\n")
    weights = (folder / "model.safetensors").read_bytes()
    _age(folder)
    assert "older version" in _served_in_a_clean_process(task, folder, tmp_path)

    done = subprocess.run(
        [sys.executable, "-m", "model_cards", "resave", str(folder)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pipelines.py" in done.stdout and (folder / "pipelines.py").is_file()
    assert "custom_pipelines" in json.loads((folder / "config.json").read_text())
    assert (folder / "README.md").read_text() == "# my card\n"  # the card is kept
    assert not list(tmp_path.glob(f".{task}.resave-*"))  # no staging folder left behind
    from safetensors.numpy import load

    old, new = load(weights), load((folder / "model.safetensors").read_bytes())
    assert old.keys() == new.keys() and all(np.array_equal(old[k], new[k]) for k in old)
    assert _served_in_a_clean_process(task, folder, tmp_path) == "RGB"


def _served_in_a_clean_process(task: str, folder: Path, tmp_path: Path) -> str:
    """What the app makes of `folder` where only serving/ exists (a Space): the photo's mode, or
    the error. (In this process the registered classes would stand in for the folder's code.)"""
    result = _clean_run(
        f"""
        sys.modules.pop("serving")
        sys.path.insert(0, {str(REPO_ROOT)!r})
        import serving
        try:
            model = serving.load_model({task!r}, {str(folder)!r})
            print(model.load_image({str(serving.EXAMPLES[0])!r}).mode)
        except serving.ModelError as error:
            print(error)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.slow  # a subprocess: the slow tier
def test_resave_refuses_a_folder_without_a_model(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "model_cards", "resave", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (
        done.returncode == 2 and "no config.json" in done.stderr and "Traceback" not in done.stderr
    )
