"""The metrics package: its `evaluate` modules load alone, and the pieces it shares are right."""

import re
import shutil
import sys

import pytest
import sacrebleu

from metrics import (
    baseline_mae,
    constant_caption_baseline,
    load_metric,
    most_common_caption,
    r2_score,
    words,
)

from .conftest import REPO_ROOT

# Apostrophes straight and typographic, hyphens inner and loose, fractions, percentages, accents.
TRICKY = [
    "men’s t-shirt",
    "don't",
    "A-line",
    "3/4 sleeve",
    "50% off",
    "rock'n'roll ’quoted’ --double--dash-- x’ 'y",
    "L'ÉTÉ café_au_lait 100% cotton, 2-in-1!",
    "women's 3-pack (navy/grey) - size: XL",
]

# inputs of each module, and what they score
EXAMPLES = {
    "rating": (
        {"predictions": [3.0, 4.0], "references": [3.0, 5.0], "train_mean": 4.0},
        {"mae": 0.5, "rmse": pytest.approx(0.5**0.5), "r2": 0.5, "baseline_mae": 1.0,
         "num_samples": 2},
    ),
    "caption": (
        {"predictions": ["men’s red t-shirt with a pocket"],
         "references": ["Men’s Red T-Shirt with a pocket"]},
        {"bleu": pytest.approx(100.0), "word_overlap": 1.0, "jaccard": 1.0,
         "length_similarity": 1.0, "num_samples": 1},
    ),
}  # fmt: skip


def test_words_split_as_the_caption_tokenizer_does():
    """The tokenizer keeps its own copy of the word regex (a saved tokenizer loads without this
    repository): the words it makes are the words the caption metric scores."""
    from modeling import build_caption_tokenizer

    backend = build_caption_tokenizer(TRICKY, min_frequency=1).backend_tokenizer
    for text in TRICKY:
        pieces = backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))
        assert [piece for piece, _ in pieces if re.match(r"\w", piece)] == words(text), text
    assert words("Men’s T-Shirt") == ["men’s", "t-shirt"]
    assert words("3/4 sleeve, 50% off") == ["3", "4", "sleeve", "50", "off"]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_module_loads_alone_from_a_copy_of_its_folder(name, tmp_path, monkeypatch):
    """`evaluate.load(path)` copies the module's own folder and nothing more."""
    import evaluate

    inputs, expected = EXAMPLES[name]
    # under a new name, so evaluate imports the copy afresh rather than reuse the module it has
    copy = tmp_path / f"standalone_{name}"
    shutil.copytree(REPO_ROOT / "metrics" / name, copy, ignore=shutil.ignore_patterns("*.pyc"))
    (copy / f"{name}.py").rename(copy / f"{copy.name}.py")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "metrics", None)  # `import metrics` fails inside
        assert evaluate.load(str(copy)).compute(**inputs) == expected
    assert load_metric(name).compute(**inputs) == expected


def test_r2_and_train_mean_baseline_by_hand():
    assert r2_score([3.0, 5.0], [3.0, 4.0]) == 0.5  # 1 - 1 / 2
    assert r2_score([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == 0.0  # the references' mean
    assert r2_score([4.0, 4.0], [4.0, 4.0]) != r2_score([4.0, 4.0], [4.0, 4.0])  # NaN
    assert baseline_mae([3.0, 5.0], train_mean=4.0) == 1.0


def test_constant_caption_baseline_skips_blank_captions():
    """Blank and missing captions are not candidates, however often they occur: training drops them."""
    train = ["", "  ", None, "", "Red Dress", "blue shirt", "Red Dress"]
    assert most_common_caption(train) == ("Red Dress", 2)
    assert most_common_caption(["", None, " "]) is None

    references = ["red dress", "Blue Shirt"]
    baseline = constant_caption_baseline(train, references)
    assert baseline["baseline_caption"] == "Red Dress"
    bleu = sacrebleu.corpus_bleu(["Red Dress"] * 2, [references], lowercase=True).score
    assert baseline["baseline_bleu"] == pytest.approx(bleu)
    with pytest.raises(ValueError, match="no train caption"):
        constant_caption_baseline(["", None], references)
