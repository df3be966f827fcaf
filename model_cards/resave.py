"""Save a model folder again with this version's code: `python -m model_cards resave DIR`.

A folder saved by an older version keeps the code it was saved with (`trust_remote_code` runs that
copy). Re-saving loads it with this package's classes and writes the current code files, config
(with its `pipeline()` entry) and processor files over the old ones; weights, card, metrics, plots
and checkpoints stay as they are. Everything is written beside the folder first, then moved in.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .hub import PublishError


def resave(folder: str | Path) -> list[str]:
    """Re-save `folder` with the current code; returns the names of the files written."""
    from transformers import AutoConfig, AutoModel

    # Importing modeling registers its classes with the Auto classes (torch and timm come with it).
    from modeling import ProductCaptionProcessor, ProductImageProcessor

    processors = {
        "product_rating": ProductImageProcessor,
        "product_caption": ProductCaptionProcessor,
    }
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise PublishError(f"{folder} is not a saved model folder (no config.json)")
    # trust_remote_code=False: this package's registered classes, not the folder's old copies
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    if config.model_type not in processors:
        raise PublishError(
            f"{folder} holds a {config.model_type!r} model, not one of this project's"
        )
    model = AutoModel.from_pretrained(folder, trust_remote_code=False)
    processor = processors[config.model_type].from_pretrained(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.resave-", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        written = sorted(p.name for p in staging.iterdir())
        for name in written:
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
