"""Experiment trackers (`--report_to`): the names a run logs to, checked before it starts.

Both scripts take transformers' convention: one or more tracker names, `all` (every one installed)
or `none`. TensorBoard is a dependency of this project, so it is always there; the others (wandb,
trackio, ...) are the user's to install. An integration that is asked for but not installed would
fail deep inside `Trainer` or, with `Accelerator(log_with=...)`, be skipped without a word.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path

from .script import UserError

# where a tracker's pip package is not named like the tracker
_PIP_NAMES = {"azure_ml": "azureml-core", "comet_ml": "comet-ml"}


def resolve_trackers(
    asked: str | Sequence[str] | None, supported: Collection[str], available: Collection[str]
) -> list[str]:
    """The trackers to log to: `asked` with `all` and `none` resolved.

    A name that is not in `supported` or whose package is not in `available` is a `UserError`.
    """
    names = [asked] if isinstance(asked, str) else list(asked or [])
    if names in (["none"], []):
        return []
    if names == ["all"]:
        return [name for name in supported if name in available]
    for name in names:
        if name not in supported:
            raise UserError(
                f"--report_to {name}: not a known tracker (one or more of {', '.join(supported)}, "
                "all or none)"
            )
        if name not in available:
            raise UserError(
                f"--report_to {name}: {name} is not installed (pip install "
                f"{_PIP_NAMES.get(name, name)}), or pass --report_to tensorboard or none"
            )
    return names


def default_logging_dir(output_dir: str | Path) -> Path:
    """`OUTPUT_DIR/runs/<date>_<host>`, one folder per launch: Trainer's (and PyTorch's) layout."""
    stamp = datetime.now().strftime("%b%d_%H-%M-%S")
    return Path(output_dir) / "runs" / f"{stamp}_{socket.gethostname()}"
