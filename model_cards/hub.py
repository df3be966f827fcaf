"""Every upload goes through huggingface_hub here, and every failure reaches the user as one line."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi

# Training leftovers that a published model folder does not need: Trainer's `checkpoint-*`,
# train_caption's `checkpoints/`, TensorBoard `runs/`, and Trainer's pickled arguments.
LEFTOVERS = ["checkpoint-*", "checkpoints", "runs", "training_args.bin"]
MODEL_IGNORE = [*LEFTOVERS, *(f"{name}/**" for name in LEFTOVERS[:3])]


class PublishError(RuntimeError):
    """A publishing step failed (network, credentials, missing files): reported as one line."""


def hub_call(what: str, fn, *args, **kwargs):
    """Run one huggingface_hub call; any failure becomes a `PublishError` that says what failed."""
    try:
        return fn(*args, **kwargs)
    except Exception as error:  # network, offline mode, auth, HTTP: all reach the user the same way
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PublishError(
            f"could not {what}: {reason} (check the network, HF_HUB_OFFLINE, and `hf auth login`)"
        ) from error


def push_model(folder: str | Path, repo_id: str, *, private: bool = False) -> str:
    """Upload a trained model folder (weights, code, processor, card, plots) to the model repo `repo_id`."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise PublishError(f"{folder} is not a saved model folder (no config.json)")
    api = HfApi()
    hub_call(
        f"create the model repo {repo_id}", api.create_repo, repo_id, private=private, exist_ok=True
    )
    commit = hub_call(
        f"upload {folder} to {repo_id}",
        api.upload_folder,
        repo_id=repo_id,
        folder_path=str(folder),
        ignore_patterns=MODEL_IGNORE,
        commit_message="Upload model, code, processor, card and plots",
    )
    return getattr(commit, "commit_url", f"https://huggingface.co/{repo_id}")
