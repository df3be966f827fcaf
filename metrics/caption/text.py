"""The words of a caption, as the caption metric scores them and the caption tokenizer splits them.

Kept beside `caption.py`: `evaluate.load("metrics/caption")` copies a module's imports from its own
folder, so the module still loads alone. `metrics` re-exports these for the rest of the project.
"""

from __future__ import annotations

import re

# Runs of letters and digits with inner hyphens and apostrophes, straight or typographic: "t-shirt",
# "men's" and "men’s" are one word each. modeling/tokenization_caption.py keeps its own copy (a saved
# tokenizer loads without this repository), tested to agree in tests/test_metrics.py.
WORD = re.compile(r"\w+(?:['’-]\w+)*")


def words(text: str) -> list[str]:
    """The lower-cased words of `text`."""
    return WORD.findall(text.lower())
