"""predict.py: every input (dataset split, photo folder, CSV), either model alone, bad photos as rows,
agreement with the app, resume after a kill, and two processes under `accelerate launch`.

Models are tiny and random (`save_random_models`, heads drawn wide so different photos get different
ratings and captions), loaded back through the Auto classes with `trust_remote_code=True`.
"""

import os
import subprocess
import sys
from pathlib import Path

import datasets
import pandas as pd
import pytest
import torch

import predict
from benchmarks.random_models import save_random_models
from training.script import UserError

from .conftest import REPO_ROOT

CAPTIONS = [
    "red striped t-shirt with a pocket",
    "blue plain dress with buttons",
    "black checked hoodie with a star logo",
    "orange polka dot shorts with buttons",
]
SCRIPT_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
BAD_PHOTOS = {"broken.jpg": b"this is not a photo", "empty.png": b""}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    return save_random_models(
        tmp_path_factory.mktemp("models"), captions=CAPTIONS, initializer_range=1.0
    )


@pytest.fixture(scope="module")
def photo_folder(tiny_synthetic, tmp_path_factory) -> Path:
    """Train-split photos as JPEG and PNG files (some in a subfolder), two bad photos and a text file."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "more").mkdir()
    split = datasets.load_from_disk(str(tiny_synthetic))["train"]
    for i, image in enumerate(split["image"][:6]):
        name = f"more/p{i}.png" if i % 3 == 2 else f"p{i}.jpg"
        image.save(folder / name)
    jpeg = (folder / "p0.jpg").read_bytes()
    (folder / "more" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    for name, data in BAD_PHOTOS.items():
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("not a photo, and not listed")
    return folder


def run(model_dirs, *args, models=("rating", "caption")) -> pd.DataFrame:
    flags = [f for task in models for f in (f"--{task}_model", str(model_dirs[task]))]
    output = predict.main([*flags, "--num_workers", "0", "--batch_size", "3", *args])
    return pd.read_parquet(output)


def test_folder_agrees_with_the_app_and_bad_photos_are_rows(model_dirs, photo_folder, tmp_path):
    import serving

    table = run(model_dirs, "--images", str(photo_folder), "--output", str(tmp_path / "p.parquet"),
                "--num_workers", "2")  # fmt: skip
    files = ["broken.jpg", "empty.png", "more/p2.png", "more/p5.png", "more/truncated.jpg",
             "p0.jpg", "p1.jpg", "p3.jpg", "p4.jpg"]  # fmt: skip
    assert table["file"].tolist() == files == table["key"].tolist()  # sorted, notes.txt skipped
    assert table["index"].tolist() == list(range(len(files)))
    assert list(table.columns) == ["index", "key", "file", "rating", "rating_low", "rating_high",
                                   "caption", "caption_score", "error"]  # fmt: skip
    bad = table[table["error"].notna()]
    assert bad["file"].tolist() == ["broken.jpg", "empty.png", "more/truncated.jpg"]
    assert "empty (0 bytes)" in bad["error"].iloc[1] and "truncated" in bad["error"].iloc[2]
    assert all(name in error for name, error in zip(bad["file"], bad["error"], strict=True))
    assert (
        bad[["rating", "rating_low", "rating_high", "caption", "caption_score"]].isna().all().all()
    )
    ok = table[table["error"].isna()]
    assert (ok["rating_low"] <= ok["rating"]).all() and (ok["rating"] <= ok["rating_high"]).all()
    assert (ok["rating_high"] - ok["rating_low"] > 0).all()

    rating, caption = (serving.load_model(t, model_dirs[t]) for t in ("rating", "caption"))
    app = serving.predict_batch([photo_folder / f for f in files], rating, caption, num_beams=3)
    assert app["file"].tolist() == [Path(f).name for f in files]
    good = table["error"].isna().to_numpy()
    assert (app["error"] != "").tolist() == (~good).tolist()
    assert table["rating"][good].to_numpy() == pytest.approx(app["rating"][good], abs=1e-5)
    assert table["caption"][good].tolist() == app["caption"][good].tolist()
    assert len(set(table["caption"][good])) > 1  # the photos really differ

    # the score is the model's own: generate on the app's pixels
    pictures = [rating.load_image(str(photo_folder / f)) for f in table["file"][good]]
    pixels = caption.processor(images=pictures)["pixel_values"]
    with torch.inference_mode():
        scores = caption.model.generate(
            pixel_values=pixels, num_beams=3, output_scores=True, return_dict_in_generate=True
        )
    assert table["caption_score"][good].tolist() == pytest.approx(
        scores.sequences_scores.tolist(), abs=1e-5
    )
    assert not (tmp_path / "p.parquet.parts").exists()  # merged, then removed


def test_dataset_split_has_the_true_values(model_dirs, tiny_synthetic, tmp_path):
    split = datasets.load_from_disk(str(tiny_synthetic))["validation"]
    table = run(model_dirs, "--dataset", str(tiny_synthetic), "--split", "validation",
                "--output", str(tmp_path / "p.parquet"))  # fmt: skip
    assert list(table.columns) == ["index", "key", "product_id", "rating", "rating_low",
                                   "rating_high", "caption", "caption_score", "error",
                                   "true_rating", "true_caption"]  # fmt: skip
    assert table["product_id"].tolist() == split["product_id"]
    assert table["key"].tolist() == [f"{p}#{i}" for i, p in enumerate(split["product_id"])]
    assert table["true_rating"].tolist() == pytest.approx(split["rating"])
    assert table["true_caption"].tolist() == split["caption"]
    assert table["error"].isna().all()
    assert table["rating"].between(1, 5).all() and (table["caption_score"] <= 0).all()


def test_dataset_without_labels_and_either_model_alone(model_dirs, tiny_synthetic, tmp_path):
    """No rating/caption columns: no true_* columns; a row whose stored photo is not one: its error."""
    split = datasets.load_from_disk(str(tiny_synthetic))["test"].remove_columns(
        ["rating", "caption"]
    )
    split = split.cast_column("image", datasets.Image(decode=False))

    def spoil(row, i):
        return {"image": {"bytes": b"garbage", "path": None}} if i == 1 else row

    split = split.map(spoil, with_indices=True)
    datasets.DatasetDict({"test": split}).save_to_disk(str(tmp_path / "unlabelled"))
    args = ["--dataset", str(tmp_path / "unlabelled")]

    ratings = run(model_dirs, *args, "--output", str(tmp_path / "r.parquet"), models=["rating"])
    assert list(ratings.columns) == ["index", "key", "product_id", "rating", "rating_low",
                                     "rating_high", "error"]  # fmt: skip
    assert ratings["error"].notna().tolist() == [i == 1 for i in range(len(split))]
    assert "test row 1 (" in ratings["error"][1] and "not an image" in ratings["error"][1]
    assert ratings["rating"].isna().tolist() == ratings["error"].notna().tolist()

    captions = run(model_dirs, *args, "--output", str(tmp_path / "c.parquet"), models=["caption"])
    assert list(captions.columns) == ["index", "key", "product_id", "caption", "caption_score",
                                      "error"]  # fmt: skip
    assert (
        captions["error"].notna().sum() == 1 and captions["caption"].notna().sum() == len(split) - 1
    )


def test_csv_paths_are_relative_to_the_csv(model_dirs, photo_folder, tmp_path):
    (tmp_path / "lists").mkdir()
    csv = tmp_path / "lists" / "photos.csv"
    relative = os.path.relpath(photo_folder, csv.parent)
    pd.DataFrame({
        "product_id": ["a", "b", "c", "a"],
        "image": [f"{relative}/p0.jpg", f"{relative}/more/p2.png", "missing.jpg", f"{relative}/p0.jpg"],
        "rating": ["4.5", "", "2", "4.5"],
    }).to_csv(csv, index=False)  # fmt: skip
    table = run(model_dirs, "--csv", str(csv), "--output", str(tmp_path / "p.parquet"),
                models=["caption"])  # fmt: skip
    assert list(table.columns) == ["index", "key", "product_id", "file", "caption", "caption_score",
                                   "error", "true_rating"]  # fmt: skip
    assert table["product_id"].tolist() == ["a", "b", "c", "a"]
    assert table["key"].tolist() == [f"{f}#{i}" for i, f in enumerate(table["file"])]  # one per row
    assert table["true_rating"].tolist()[::2] == [4.5, 2.0] and pd.isna(table["true_rating"][1])
    assert table["error"].notna().tolist() == [False, False, True, False]
    assert "missing.jpg not found" in table["error"][2]
    assert table["caption"][0] == table["caption"][3]  # the same photo twice, two rows


def test_resume_after_a_kill_predicts_only_the_rest(
    model_dirs, tiny_synthetic, tmp_path, monkeypatch, capsys
):
    args = ["--dataset", str(tiny_synthetic), "--split", "train", "--batch_size", "2",
            "--part_rows", "2"]  # fmt: skip
    whole = run(model_dirs, *args, "--output", str(tmp_path / "whole.parquet"))
    output = tmp_path / "p.parquet"
    parts = tmp_path / "p.parquet.parts"

    class Killed(BaseException):
        pass

    written, write_part = [], predict.write_part

    def write_then_die(rows, schema, path):
        if len(written) == 3:
            (parts / f".{path.name}.999.tmp").write_bytes(b"PAR1 half a file")  # killed mid-write
            raise Killed
        written.append(len(rows))
        write_part(rows, schema, path)

    monkeypatch.setattr(predict, "write_part", write_then_die)
    with pytest.raises(Killed):
        run(model_dirs, *args, "--output", str(output))
    assert not output.exists() and len(predict.part_files(parts)) == 3  # nothing looks complete

    with pytest.raises(UserError, match="unfinished run.*--resume"):
        run(model_dirs, *args, "--output", str(output))
    with pytest.raises(UserError, match="other settings.*num_beams 3 -> 2"):
        run(model_dirs, *args, "--output", str(output), "--resume", "--num_beams", "2")

    monkeypatch.setattr(predict, "write_part", write_part)
    capsys.readouterr()
    resumed = run(model_dirs, *args, "--output", str(output), "--resume")
    printed = capsys.readouterr().out
    assert (
        f"{len(whole)} photos, 6 already predicted (--resume), {len(whole) - 6} to predict"
        in printed
    )
    assert f"predicted {len(whole) - 6} photos" in printed
    pd.testing.assert_frame_equal(resumed.drop(columns="rating"), whole.drop(columns="rating"))
    assert resumed["rating"].to_numpy() == pytest.approx(whole["rating"].to_numpy(), abs=1e-5)
    assert not parts.exists()

    with pytest.raises(UserError, match="exists and is complete: --overwrite"):
        run(model_dirs, *args, "--output", str(output), "--resume")
    again = run(model_dirs, *args, "--output", str(output), "--overwrite", "--num_beams", "2")
    assert len(again) == len(whole)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--images", "X", "--csv", "Y"], "exactly one input.*--images, --csv"),
        ([], "exactly one input"),
        (["--images", "{tmp}/nowhere"], "images folder not found"),
        (["--images", "{tmp}"], "no photos in"),
        (["--dataset", "{tmp}/nowhere"], "dataset folder not found"),
        (["--dataset", "{data}", "--split", "holdout"], "no split 'holdout'"),
        (["--csv", "{tmp}/nowhere.csv"], "CSV file not found"),
        (["--images", "{tmp}", "--rating_model", "{tmp}/nowhere"], "model folder not found"),
        (["--images", "{tmp}", "--caption_model", "{rating}"], "is a 'product_rating' model"),
        (["--images", "{tmp}", "--rating_model", "{tmp}"], "could not load the rating model"),
    ],
)
def test_bad_arguments_are_user_errors(model_dirs, tiny_synthetic, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, data=tiny_synthetic, rating=model_dirs["rating"]) for a in args]
    if "_model" not in " ".join(args):
        args += ["--rating_model", str(model_dirs["rating"])]
    if "no photos" not in message:
        (tmp_path / "photo.png").write_bytes(b"")  # a folder with a photo, to get past that check
    with pytest.raises(UserError, match=message):
        predict.main([*args, "--output", str(tmp_path / "p.parquet")])


def test_csv_without_an_image_column_and_no_model(model_dirs, tmp_path):
    (tmp_path / "bad.csv").write_text("path,product_id\na.jpg,1\n")
    with pytest.raises(UserError, match="no 'image' column"):
        run(model_dirs, "--csv", str(tmp_path / "bad.csv"), "--output", str(tmp_path / "p.parquet"))
    with pytest.raises(UserError, match="--rating_model, --caption_model or both"):
        predict.main(["--csv", str(tmp_path / "bad.csv"), "--output", str(tmp_path / "p.parquet")])


def test_help_lists_the_schema(capsys):
    with pytest.raises(SystemExit) as exit:
        predict.parse_args(["--help"])
    assert exit.value.code == 0
    printed = capsys.readouterr().out
    for column in ("index", "key", "product_id", "file", "rating", "caption_score", "error",
                   "true_rating", "true_caption", "--resume", "--num_beams", "--max_pixels"):  # fmt: skip
        assert column in printed


@pytest.mark.slow
def test_two_processes_split_the_photos_and_merge_them(
    model_dirs, tiny_synthetic, photo_folder, tmp_path
):
    """The torchrun launcher (`--multi_gpu`) with ACCELERATE_USE_CPU=1 starts two CPU processes (its
    simple launcher, `--cpu --num_processes 2`, starts one): the same rows as one process, each once."""
    args = ["--rating_model", str(model_dirs["rating"]), "--caption_model", str(model_dirs["caption"]),
            "--dataset", str(tiny_synthetic), "--split", "train", "--batch_size", "4",
            "--part_rows", "4", "--num_workers", "1"]  # fmt: skip
    one = pd.read_parquet(predict.main([*args, "--output", str(tmp_path / "one.parquet")]))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "predict.py", *args, "--output", str(tmp_path / "two.parquet")]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env={**SCRIPT_ENV, "ACCELERATE_USE_CPU": "1"},
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "predicting on 2 processes" in result.stdout  # really distributed
    half = len(one) // 2
    assert f"per process: [{len(one) - half}, {half}]" in result.stdout  # every other photo each
    two = pd.read_parquet(tmp_path / "two.parquet")
    assert two["key"].is_unique and len(two) == len(one)
    pd.testing.assert_frame_equal(two.drop(columns="rating"), one.drop(columns="rating"))
    assert two["rating"].to_numpy() == pytest.approx(one["rating"].to_numpy(), abs=1e-5)
    assert not (tmp_path / "two.parquet.parts").exists()


@pytest.mark.slow
def test_script_reports_a_user_error_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "predict.py", "--rating_model", str(tmp_path), "--images",
         str(tmp_path / "nowhere"), "--output", str(tmp_path / "p.parquet")],
        cwd=REPO_ROOT, env=SCRIPT_ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: images folder not found: {tmp_path / 'nowhere'}"
    ]


def test_resume_matches_rows_by_key_when_the_folder_changed(
    model_dirs, photo_folder, tmp_path, monkeypatch
):
    """Rows are keyed by relative path: a photo added before resuming shifts the others' positions,
    a photo removed loses its row."""
    import shutil

    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    args = ["--images", str(folder), "--part_rows", "3", "--output", str(tmp_path / "p.parquet")]

    write_part = predict.write_part

    def write_once(rows, schema, path):  # the first part is written, then the run is killed
        if predict.part_files(path.parent):
            raise KeyboardInterrupt
        write_part(rows, schema, path)

    monkeypatch.setattr(predict, "write_part", write_once)
    with pytest.raises(KeyboardInterrupt):
        run(model_dirs, *args)
    assert predict.done_keys(tmp_path / "p.parquet.parts") == {
        "broken.jpg",
        "empty.png",
        "more/p2.png",
    }
    monkeypatch.setattr(predict, "write_part", write_part)
    shutil.copy(folder / "p0.jpg", folder / "a_new.jpg")
    (folder / "more" / "p2.png").unlink()
    table = run(model_dirs, *args, "--resume").set_index("file")
    assert table.index.tolist() == sorted(predict.folder_inputs(folder).photos.files)
    assert table["index"].tolist() == list(range(len(table)))  # today's positions
    assert "more/p2.png" not in table.index and pd.isna(table["error"]["a_new.jpg"])
    assert table["caption"]["a_new.jpg"] == table["caption"]["p0.jpg"]


def test_a_greedy_caption_score_is_its_mean_log_probability_per_token():
    """Greedy search has no `sequences_scores`: predict.py computes the same from its step scores."""
    from modeling import ProductCaptionModel, build_caption_tokenizer
    from predict import caption_scores

    from .conftest import tiny_caption_config

    tokenizer = build_caption_tokenizer(["red plain dress", "blue striped shirt with a pocket"],
                                        min_frequency=1, max_length=8)  # fmt: skip
    torch.manual_seed(0)
    model = ProductCaptionModel(tiny_caption_config(tokenizer, initializer_range=1.0)).eval()
    memory = torch.randn(6, 5, model.feature_dim)
    out = model.generate(
        encoder_hidden_states=memory, output_scores=True, return_dict_in_generate=True
    )
    for i, score in enumerate(caption_scores(model, out).tolist()):
        ids = out.sequences[i].tolist()
        end = (
            ids.index(model.config.eos_token_id) + 1
            if model.config.eos_token_id in ids
            else len(ids)
        )
        ids = torch.tensor([ids[:end]])
        log_probs = model(
            encoder_hidden_states=memory[i : i + 1], input_ids=ids
        ).logits.log_softmax(-1)
        expected = log_probs[0, :-1].gather(1, ids[0, 1:, None]).mean()
        assert score == pytest.approx(expected.item(), abs=1e-5)
