"""The scripts' shared package `training/`, and the defects fixed when the scripts moved onto it."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import evaluate_models
import train_caption
import train_rating
from modeling import ProductImageProcessor, ProductRatingConfig, ProductRatingModel
from training import precision
from training.captions import mean_loss
from training.checkpoints import guard_output_dir
from training.data import has_caption, load_splits
from training.script import UserError, command_line, first_line, run_script

REPO = Path(__file__).resolve().parent.parent

# --- one user-error type, one way to report it --------------------------------------------------


def test_first_line_of_an_empty_message_is_empty():
    assert first_line(ValueError()) == "" and first_line("") == ""
    assert first_line(OSError("one\ntwo")) == "one" and first_line("abcdef", 3) == "abc"


@pytest.mark.parametrize("error", [UserError("bad input\ndetails"), UserError()])
def test_run_script_reports_one_line_and_exits_2(error, capsys):
    def main():
        raise error

    with pytest.raises(SystemExit) as exit:
        run_script(main)
    assert exit.value.code == 2
    assert capsys.readouterr().err == f"error: {first_line(error) or 'UserError'}\n"


def test_an_empty_weights_error_message_is_still_one_clear_error(monkeypatch):
    def fail(self, pretrained):
        raise OSError()  # no message: str(error).splitlines() is []

    monkeypatch.setattr(ProductRatingModel, "load_pretrained_backbone", fail)
    model_args = train_rating.ModelArguments(backbone="test_resnet", pretrained_backbone="false")
    with pytest.raises(UserError, match=r"could not load pretrained weights .*\(OSError: \)"):
        train_rating.build_model(model_args, train_mean=3.0, log=print)


def test_evaluate_models_with_an_empty_config_error(monkeypatch, tiny_synthetic):
    def fail(*args, **kwargs):
        raise OSError("")

    monkeypatch.setattr(evaluate_models.AutoConfig, "from_pretrained", fail)
    with pytest.raises(UserError, match="cannot load a model from nowhere: $"):
        evaluate_models.main(["--model", "nowhere", "--dataset", str(tiny_synthetic)])


# --- load_splits ----------------------------------------------------------------------------------


def test_load_splits_checks_folder_splits_and_columns(tiny_synthetic, tmp_path):
    assert set(load_splits(tiny_synthetic, ["image", "caption"])) >= {"train", "test"}
    with pytest.raises(UserError, match="dataset folder not found"):
        load_splits(tmp_path / "nope", ["image"])
    with pytest.raises(UserError, match="has no split 'dev'"):
        load_splits(tiny_synthetic, ["image"], ["train", "dev"])
    with pytest.raises(UserError, match="no 'no_such_column' column in its train split"):
        load_splits(tiny_synthetic, ["image", "no_such_column"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is not a saved dataset"):
        load_splits(tmp_path / "empty", ["image"])


@pytest.mark.slow
def test_the_caption_filter_hashes_the_same_from_any_entry_point():
    """The feature cache's key holds each split's fingerprint after this filter, so a script run and
    an importer (tests, docs/studies) must hash it alike."""
    from datasets.fingerprint import Hasher

    assert [has_caption(c) for c in ("a", " ", "", None)] == [True, False, False, False]
    script = (
        "from datasets.fingerprint import Hasher; from training.data import has_caption; "
        "print(Hasher.hash(has_caption))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.split()[-1] == Hasher.hash(has_caption)


# --- precision (a) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cuda, requested, environ, expected",
    [
        (True, None, {}, "fp16"),
        (False, None, {}, "no"),
        (False, "bf16", {}, "bf16"),
        (True, "bf16", {}, "bf16"),
        (True, None, {"ACCELERATE_MIXED_PRECISION": "bf16"}, None),  # accelerate launch decides
        (True, "no", {}, "no"),
    ],
)
def test_one_place_decides_the_precision(cuda, requested, environ, expected, monkeypatch):
    monkeypatch.setattr(precision, "cuda_available", lambda: cuda)
    assert precision.mixed_precision(requested, environ=environ) == expected


def test_fp16_without_cuda_is_a_user_error(monkeypatch):
    monkeypatch.setattr(precision, "cuda_available", lambda: False)
    with pytest.raises(UserError, match="fp16 mixed precision needs a CUDA GPU"):
        precision.mixed_precision("fp16")


def test_train_rating_bf16_on_cuda_is_not_also_fp16(monkeypatch, tmp_path):
    """fp16 was decided from sys.argv at import time: main([..., '--bf16', 'true']) on CUDA then
    asked for both. Now the parsed arguments decide."""
    monkeypatch.setattr(precision, "cuda_available", lambda: True)
    argv = ["--dataset", "d", "--output_dir", str(tmp_path), "--bf16", "true", "--use_cpu", "true"]
    _, _, training_args = train_rating.parse_args(argv)
    assert training_args.bf16 and not training_args.fp16


def test_train_rating_bf16_without_cuda_runs_on_the_cpu(monkeypatch, tmp_path):
    """TrainingArguments refused bf16 without a GPU unless use_cpu was given ("Your setup doesn't
    support bf16/gpu")."""
    monkeypatch.setattr(precision, "cuda_available", lambda: False)
    monkeypatch.setattr(train_rating, "cuda_available", lambda: False)
    argv = ["--dataset", "d", "--output_dir", str(tmp_path), "--bf16", "true"]
    _, _, training_args = train_rating.parse_args(argv)
    assert training_args.bf16 and training_args.use_cpu and not training_args.fp16
    _, _, fp32_args = train_rating.parse_args(argv[:-2])
    assert not fp32_args.bf16 and not fp32_args.use_cpu  # the default device stays Trainer's


# --- channels_last (b) ------------------------------------------------------------------------------


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_false_reaches_the_inputs(channels_last, tmp_path):
    from transformers import TrainingArguments

    rows = [{"pixel_values": torch.rand(3, 8, 8), "labels": 3.0} for _ in range(2)]
    pixels = train_rating.collate(rows, channels_last=channels_last)["pixel_values"]
    assert pixels.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert pixels.is_contiguous() != channels_last
    trainer = train_rating.RatingTrainer(
        model=ProductRatingModel(ProductRatingConfig(backbone="test_resnet", image_size=8)),
        args=TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True),
        processing_class=ProductImageProcessor(image_size=8),
        channels_last=channels_last,
    )
    uint8 = torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8)
    normalized = trainer._prepare_inputs({"pixel_values": uint8})["pixel_values"]
    assert normalized.is_contiguous(memory_format=torch.channels_last) == channels_last


# --- mean_loss over processes (c) -------------------------------------------------------------------


def test_mean_loss_gathers_one_scalar_per_process():
    class TwoProcesses:
        """Stands in for a 2-process Accelerator: the other process's loss is this one's + 1."""

        def gather(self, tensor):
            return torch.cat([tensor, tensor + 1])

        def gather_for_metrics(self, tensor):
            raise AssertionError("gather_for_metrics truncates per-sample tensors, not losses")

    class Constant(torch.nn.Module):
        def forward(self, **batch):
            return type("Output", (), {"loss": batch["labels"].float().mean()})

    loader = [{"labels": torch.tensor([1.0, 3.0]), "index": torch.tensor([0, 1])}] * 3
    assert mean_loss(Constant(), loader, TwoProcesses()) == pytest.approx(2.5)


# --- the card's command (e), the output-folder guard, train_caption's arguments --------------------


def test_the_card_records_how_the_script_was_started():
    argv = ["--dataset", "d"]
    assert (
        command_line("train_caption.py", argv, 1, environ={})
        == "python train_caption.py --dataset d"
    )
    launched = {"ACCELERATE_DYNAMO_BACKEND": "NO"}
    assert command_line("train_caption.py", argv, 1, environ=launched).startswith(
        "accelerate launch train_caption.py"
    )
    assert command_line("train_rating.py", argv, 2, environ=launched).startswith(
        "accelerate launch --num_processes 2 train_rating.py --dataset d"
    )


def test_output_folder_guard(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "epoch_1").mkdir(parents=True)
    kwargs = dict(resume_hint="--resume_from_checkpoint latest")
    with pytest.raises(UserError, match="holds files of an earlier run"):
        guard_output_dir(
            tmp_path, "files", [checkpoints], overwrite=False, resuming=False, **kwargs
        )
    guard_output_dir(tmp_path, "files", [checkpoints], overwrite=False, resuming=True, **kwargs)
    assert checkpoints.is_dir()
    guard_output_dir(tmp_path, "files", [checkpoints], overwrite=True, resuming=False, **kwargs)
    assert not checkpoints.exists()
    guard_output_dir(tmp_path, None, [], overwrite=False, resuming=False, **kwargs)


def test_train_caption_refuses_a_used_output_folder(tiny_synthetic, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "eval_results.json").write_text("{}")
    argv = ["--dataset", str(tiny_synthetic), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(UserError, match="--overwrite_output_dir to start afresh"):
        train_caption.main(argv)


def test_train_caption_arguments_keep_their_command_line():
    model_args, args = train_caption.parse_args(
        ["--dataset", "d", "--output_dir", "o", "--attention", "false", "--freeze_encoder",
         "false", "--mixed_precision", "bf16", "--push_to_hub", "--hub_model_id", "me/m",
         "--pretrained_encoder", "pypi", "--context_dim", "64"]
    )  # fmt: skip
    assert not model_args.attention and not model_args.freeze_encoder
    assert model_args.pretrained_encoder == "pypi" and model_args.context_dim == 64
    assert args.mixed_precision == "bf16" and args.push_to_hub and args.hub_model_id == "me/m"
    defaults, _ = train_caption.parse_args(["--dataset", "d", "--output_dir", "o"])
    assert (defaults.dropout, defaults.embed_dim, defaults.encoder) == (
        0.3, 128, "vit_small_patch16_224"
    )  # fmt: skip
    with pytest.raises(UserError, match="--push_to_hub needs --hub_model_id"):
        train_caption.parse_args(["--dataset", "d", "--output_dir", "o", "--push_to_hub", "true"])
    for flag, value in (
        ("--attention_plots", "-1"),
        ("--num_beams", "0"),
        ("--num_train_epochs", "0"),
    ):
        with pytest.raises(UserError, match=f"{flag} must be at least"):
            train_caption.parse_args(["--dataset", "d", "--output_dir", "o", flag, value])
    with pytest.raises(SystemExit):
        train_caption.parse_args(["--dataset", "d", "--output_dir", "o", "--mixed_precision", "x"])


# --- a dataset folder is read, never written -------------------------------------------------------


def folder_state(folder: Path) -> dict[str, str]:
    import hashlib

    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_training_leaves_the_dataset_folder_as_it_found_it(tmp_path):
    """Both scripts train on a built dataset; its listing and every file's hash stay the same, and
    `load_dataset` (the card's `configs`) and `load_from_disk` both read it before and after."""
    import datasets

    from hf_dataset import synthetic

    from .test_caption import train_args
    from .test_rating import TINY_ARGS

    folder = tmp_path / "dataset"
    synthetic.build(folder, num_products=40, seed=1, image_size=32)
    before = folder_state(folder)
    sizes = {split: len(rows) for split, rows in datasets.load_from_disk(folder).items()}
    assert {s: len(r) for s, r in datasets.load_dataset(str(folder)).items()} == sizes

    train_caption.main(
        train_args(folder, tmp_path / "caption", tmp_path / "cache", "--num_train_epochs", "1")
    )
    train_rating.main(["--dataset", str(folder), "--output_dir", str(tmp_path / "rating"),
                       *TINY_ARGS, "--num_train_epochs", "1"])  # fmt: skip

    assert folder_state(folder) == before
    assert {s: len(r) for s, r in datasets.load_from_disk(folder).items()} == sizes
    assert {s: len(r) for s, r in datasets.load_dataset(str(folder)).items()} == sizes
