"""Push a built dataset folder to the Hugging Face Hub: the data, its card and its build report.

`DatasetDict.push_to_hub` uploads the splits as Parquet and fills the card's `dataset_info` and
`configs`; it keeps the body of a card already in the repo, so ours is uploaded first (with the
local-only `configs`/`dataset_info` removed) and `build_report.json` goes beside it. Any failure
(offline, no token, no permission) is one line, and the local folder is never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi

from .build import BuildError


def push_to_hub(folder: str | os.PathLike, repo_id: str, *, private: bool = False) -> str:
    """Upload the dataset saved in `folder` to the dataset repo `repo_id`; returns its URL."""
    folder = Path(folder)
    if not (folder / "dataset_dict.json").is_file():
        raise BuildError(f"{folder} is not a dataset folder (no dataset_dict.json)")
    dataset = datasets.load_from_disk(str(folder))
    card = DatasetCard.load(folder / "README.md")
    # Those describe the save_to_disk layout (Arrow files); push_to_hub writes the Parquet ones.
    card.data.pop("configs", None)
    card.data.pop("dataset_info", None)
    # The card embeds the analysis plots by relative path: they travel with it.
    analysis = sorted(p for p in (folder / "analysis").glob("*") if p.is_file())
    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.create_commit(
            repo_id,
            repo_type="dataset",
            operations=[
                CommitOperationAdd("README.md", str(card).encode()),
                CommitOperationAdd("build_report.json", str(folder / "build_report.json")),
                *(CommitOperationAdd(f"analysis/{p.name}", str(p)) for p in analysis),
            ],
            commit_message="Add the dataset card and the build report",
        )
        dataset.push_to_hub(repo_id, private=private)
    except Exception as error:  # offline, no token, no permission, network: all one line
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise BuildError(
            f"could not push to the Hub dataset {repo_id} ({type(error).__name__}: {message}); "
            f"the local dataset {folder} is intact: retry with "
            f"`python -m hf_dataset push {folder} {repo_id}`"
        ) from None
    return str(url)


def add_arguments(parser) -> None:
    parser.add_argument("folder", help="a dataset folder written by python -m hf_dataset")
    parser.add_argument("repo_id", help="Hub dataset repo, e.g. your-name/amazon-fashion-2023")
    parser.add_argument("--private", action="store_true", help="create the repo as private")


def main(args) -> None:
    url = push_to_hub(args.folder, args.repo_id, private=args.private)
    print(f"pushed {args.folder} to {url}")
