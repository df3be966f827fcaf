"""Checkpoints of train_caption.py's loop (save, rotate, resolve), and the output-folder guard that
train_rating.py and train_caption.py share."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from .script import UserError


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """The complete `checkpoints/epoch_N` folders of `output_dir`, oldest first."""
    found = [
        p
        for p in (Path(output_dir) / "checkpoints").glob("epoch_*")
        if (p / "training_state.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def save_checkpoint(accelerator, output_dir: Path, epoch: int, state: dict) -> None:
    """`save_state` into a temporary folder, renamed when complete; keeps the latest and the best."""
    final = Path(output_dir) / "checkpoints" / f"epoch_{epoch}"
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)  # every process writes its own random state into it
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()  # no rename while another process is still writing
    if accelerator.is_main_process:
        (tmp / "training_state.json").write_text(json.dumps(state, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        keep = {final.name, f"epoch_{state['best_epoch']}"}
        for old in checkpoint_dirs(output_dir):
            if old.name not in keep:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


def resolve_checkpoint(value: str, output_dir: Path) -> Path:
    """`--resume_from_checkpoint`: 'latest' (the newest complete checkpoint) or a checkpoint folder."""
    if value == "latest":
        found = checkpoint_dirs(output_dir)
        if not found:
            raise UserError(
                f"--resume_from_checkpoint latest: no checkpoint in {Path(output_dir) / 'checkpoints'}"
            )
        return found[-1]
    path = Path(value)
    if not (path / "training_state.json").is_file():
        raise UserError(f"--resume_from_checkpoint {value}: not a complete checkpoint folder")
    return path


def guard_output_dir(
    output_dir: Path,
    earlier: str | None,
    checkpoints: Iterable[Path],
    *,
    overwrite: bool,
    resuming: bool,
    resume_hint: str,
    is_main: bool = True,
) -> None:
    """Never mix a new run into an earlier one's output folder by accident.

    `earlier` says what of an earlier run `output_dir` holds ("checkpoints", "files"), None if
    nothing. Without `resuming` or `overwrite` that is a UserError; with `overwrite` (and not
    resuming) the main process deletes the earlier run's `checkpoints`, and nothing else."""
    if resuming or earlier is None:
        return
    if not overwrite:
        raise UserError(
            f"{output_dir} holds {earlier} of an earlier run: pass {resume_hint} to continue it, "
            "--overwrite_output_dir to start afresh, or another --output_dir"
        )
    if is_main:
        for checkpoint in checkpoints:
            shutil.rmtree(checkpoint)
