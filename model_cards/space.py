"""Assemble the Gradio Space folder (app, requirements, README front matter, models) and upload it.

The Space runs `app.py` and `serving/` alone, without the rest of this repository: models load with
`from_pretrained` and `trust_remote_code=True`. A model given as a local folder is copied into `models/rating` or
`models/caption` inside the Space (where `app.py` looks first); a model given as a Hub id is named in
the front matter and passed to the app as a Space variable (`RATING_MODEL`, `CAPTION_MODEL`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

from huggingface_hub import HfApi, SpaceCard, SpaceCardData

from .hub import LEFTOVERS, PublishError, hub_call

REPO_ROOT = Path(__file__).resolve().parent.parent
# What app.py and serving/ import, pinned to the versions this project is tested with.
REQUIREMENTS = ["gradio", "transformers", "timm", "torch", "torchvision", "tokenizers", "huggingface_hub",
                "safetensors", "pillow", "numpy", "pandas", "matplotlib"]  # fmt: skip
VARIABLES = {"rating": "RATING_MODEL", "caption": "CAPTION_MODEL"}


def assemble_space(
    output: str | Path,
    *,
    rating_model: str | None,
    caption_model: str | None,
    dataset_id: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Write everything the Space needs into `output`; returns the Space variables to set."""
    if not rating_model and not caption_model:
        raise PublishError("give at least one of --rating_model and --caption_model")
    app = REPO_ROOT / "app.py"
    if not app.is_file():
        raise PublishError(f"{app} not found: the Space runs this project's app.py")
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise PublishError(
                f"output folder {output} is not empty; pass --overwrite to replace it"
            )
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    shutil.copy2(app, output / "app.py")
    shutil.copytree(
        REPO_ROOT / "serving", output / "serving", ignore=shutil.ignore_patterns("__pycache__")
    )
    for example in sorted((REPO_ROOT / "examples").glob("*.jpg")):  # the app's example photos
        (output / "examples").mkdir(exist_ok=True)
        shutil.copy2(example, output / "examples" / example.name)
    (output / "requirements.txt").write_text(
        "".join(f"{name}=={version(name)}\n" for name in REQUIREMENTS)
    )

    variables, hub_models = {}, []
    for task, model in (("rating", rating_model), ("caption", caption_model)):
        if not model:
            continue
        if Path(model).is_dir():
            if not (Path(model) / "config.json").is_file():
                raise PublishError(f"{model} is not a saved model folder (no config.json)")
            shutil.copytree(
                model,
                output / "models" / task,
                ignore=shutil.ignore_patterns(*LEFTOVERS),
            )
        else:
            variables[VARIABLES[task]] = model
            hub_models.append(model)
    data = SpaceCardData(
        title="Fashion product rating & captioning",
        sdk="gradio",
        sdk_version=version("gradio"),
        app_file="app.py",
        license="apache-2.0",
        models=hub_models or None,
        datasets=[dataset_id] if dataset_id else None,
        tags=["fashion", "image-to-text", "product-rating"],
    )
    data.emoji = "👗"
    data.colorFrom = "indigo"
    data.colorTo = "pink"
    data.pinned = False
    body = (
        "# Fashion product rating & captioning\n\n"
        "Upload a product photo: one model predicts its star rating (1-5), another writes its title.\n"
        "Both are custom `transformers` models loaded with `trust_remote_code=True`; see their model cards.\n"
    )
    SpaceCard(f"---\n{data.to_yaml()}\n---\n\n{body}").save(output / "README.md")
    (output / "space_variables.json").write_text(json.dumps(variables, indent=2) + "\n")
    return variables


def publish_space(
    *,
    rating_model: str | None,
    caption_model: str | None,
    space_id: str,
    dataset_id: str | None = None,
    output: str | Path | None = None,
    dry_run: bool = False,
    private: bool = False,
    overwrite: bool = False,
) -> Path | str:
    """Assemble the Space (into `output`, or a temporary folder) and, unless `dry_run`, upload it."""
    if dry_run and not output:
        raise PublishError("--dry_run writes the Space into --output DIR; give one")
    folder = Path(output) if output else Path(tempfile.mkdtemp(prefix="space-"))
    variables = assemble_space(
        folder,
        rating_model=rating_model,
        caption_model=caption_model,
        dataset_id=dataset_id,
        overwrite=overwrite or not output,
    )
    if dry_run:
        return folder
    api = HfApi()
    hub_call(
        f"create the Space {space_id}",
        api.create_repo,
        space_id,
        repo_type="space",
        space_sdk="gradio",
        private=private,
        exist_ok=True,
    )
    for key, value in variables.items():
        hub_call(f"set the Space variable {key}", api.add_space_variable, space_id, key, value)
    commit = hub_call(
        f"upload {folder} to the Space {space_id}",
        api.upload_folder,
        repo_id=space_id,
        repo_type="space",
        folder_path=str(folder),
        ignore_patterns=["space_variables.json"],
        commit_message="Publish the fashion rating & caption app",
    )
    return getattr(commit, "commit_url", f"https://huggingface.co/spaces/{space_id}")
