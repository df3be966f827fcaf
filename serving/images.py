"""Uploaded files -> the photos to predict, zip archives included, every problem a one-line error."""

from __future__ import annotations

import functools
import io
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # the folder holding app.py (a Space's root)
EXAMPLES = sorted((HERE / "examples").glob("*.jpg"))  # the example photos shipped beside app.py

# Photos are refused above this many pixels before they are decoded (the models' `load_image`).
MAX_MEGAPIXELS = 64
MAX_PIXELS = MAX_MEGAPIXELS * 10**6
MAX_BATCH_IMAGES = 1000
MAX_MEMBER_BYTES = 50 * 2**20  # per photo inside a zip


class InputError(ValueError):
    """Something wrong with what the user gave (a file, a setting): shown in the page as one line."""


class PhotoError(InputError):
    """A photo that cannot be read (empty, not an image, truncated, too large): the page also
    clears it, so that no broken image stays beside the message."""


# A photo to read: a path, a function that reads a zip member into memory, or why it cannot be read.
Source = str | Callable[[], io.BytesIO] | InputError


def collect_images(files: Iterable[str | Path]) -> list[tuple[str, Source]]:
    """Uploaded files -> (name, source) for every photo, the members of zip files included.

    A zip member's source is a function that reads it into memory when its turn comes (members are
    never extracted, so no path inside an archive can write anywhere); folders and hidden files such
    as macOS's `__MACOSX/._*` are skipped. A file that cannot be opened gets its error as source.
    """
    items = []
    for file in files:
        path = Path(file)
        if path.suffix.lower() != ".zip":
            items.append((path.name, str(path)))
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    parts = Path(info.filename).parts
                    if info.is_dir() or any(p.startswith((".", "__MACOSX")) for p in parts):
                        continue
                    name = f"{path.name}/{info.filename}"
                    items.append((name, functools.partial(_read_member, path, info, name)))
                    if len(items) > MAX_BATCH_IMAGES:
                        break  # refused below; no need to list a million members
        except (zipfile.BadZipFile, OSError) as error:
            items.append(
                (path.name, InputError(f"{path.name} is not a readable zip file ({error})"))
            )
    if len(items) > MAX_BATCH_IMAGES:
        raise InputError(
            f"{len(items):,} images in one batch; the limit is {MAX_BATCH_IMAGES:,}: split them up"
        )
    return items


def _read_member(archive: Path, info: zipfile.ZipInfo, name: str) -> io.BytesIO:
    try:
        with zipfile.ZipFile(archive) as zipped, zipped.open(info) as member:
            data = member.read(MAX_MEMBER_BYTES + 1)  # the header's size may lie: never read more
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as error:
        raise InputError(f"{name} could not be read from the zip file ({error})") from None
    if len(data) > MAX_MEMBER_BYTES:
        raise InputError(f"{name} is larger than {MAX_MEMBER_BYTES // 2**20} MB")
    return io.BytesIO(data)
