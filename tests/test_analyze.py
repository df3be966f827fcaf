import json
import shutil
import statistics
import subprocess
import sys
from collections import Counter

import datasets
import pytest
import sacrebleu
from huggingface_hub import DatasetCard
from PIL import Image

from hf_dataset import SPLITS, synthetic
from hf_dataset.analyze import CARD_END, CARD_START, analyze
from hf_dataset.build import BuildError
from metrics import constant_caption_baseline

from .conftest import REPO_ROOT


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("analyze") / "synthetic"
    synthetic.build(path, num_products=40, seed=0, image_size=32)
    return path


@pytest.fixture(scope="module")
def analysis(tiny, tmp_path_factory):
    return analyze(tiny, tmp_path_factory.mktemp("report"))


def _rows(path):
    """Every split without its images, as plain lists: the test's own view of the data."""
    dataset = datasets.load_from_disk(str(path))
    return {name: dataset[name].remove_columns("image")[:] for name in SPLITS}


def _save(dataset: dict, path):
    datasets.DatasetDict(dataset).save_to_disk(str(path))
    return path


def test_numbers_match_an_independent_computation(tiny, analysis):
    rows = _rows(tiny)
    for name in SPLITS:
        stats, ratings = analysis["splits"][name], rows[name]["rating"]
        assert stats["num_rows"] == stats["num_products"] == len(ratings) > 0
        q25, median, q75 = statistics.quantiles(ratings, n=4, method="inclusive")
        expected = {
            "count": len(ratings),
            "mean": statistics.fmean(ratings),
            "std": statistics.pstdev(ratings),
            "min": min(ratings),
            "q25": q25,
            "median": median,
            "q75": q75,
            "max": max(ratings),
        }
        for key, value in expected.items():
            assert stats["rating"][key] == pytest.approx(value, abs=1e-9), (name, key)
        assert stats["rating"]["missing"] == 0
        lengths = [len(c.split()) for c in rows[name]["caption"]]
        assert stats["caption"]["length_words"]["mean"] == pytest.approx(statistics.fmean(lengths))
        # synthetic captions are lower-case words separated by spaces, so str.split is the truth
        vocabulary = {w for c in rows[name]["caption"] for w in c.split()}
        assert stats["caption"]["vocab_size"] == len(vocabulary)
        assert stats["image"]["top_sizes"] == [["32x32", len(ratings)]]
        assert stats["extras"]["colour"]["top"][0][1] == max(Counter(rows[name]["colour"]).values())

    train_words = {w for c in rows["train"]["caption"] for w in c.split()}
    for name in ("validation", "test"):
        tokens = [w for c in rows[name]["caption"] for w in c.split()]
        oov = analysis["oov"][name]
        assert oov["tokens"] == len(tokens)
        assert oov["oov_tokens"] == sum(w not in train_words for w in tokens)
        assert oov["types"] == len(set(tokens))
        assert oov["oov_types"] == len(set(tokens) - train_words)

    baseline = analysis["baselines"]["rating"]
    train_mean = statistics.fmean(rows["train"]["rating"])
    assert baseline["train_mean"] == pytest.approx(train_mean)
    for name in ("validation", "test"):
        mae = statistics.fmean(abs(r - train_mean) for r in rows[name]["rating"])
        assert baseline[f"{name}_mae"] == pytest.approx(mae)

    caption = analysis["baselines"]["caption"]
    train_counts = Counter(rows["train"]["caption"])
    assert train_counts[caption["most_common_train_caption"]] == max(train_counts.values())
    test = rows["test"]["caption"]
    bleu = sacrebleu.corpus_bleu(
        [caption["most_common_train_caption"]] * len(test), [test], lowercase=True
    )
    assert caption["test_bleu"] == pytest.approx(bleu.score)


def test_clean_dataset_has_no_leaks_and_writes_its_report(analysis):
    assert analysis["has_ratings"] and not analysis["notes"]
    assert analysis["leakage"]["product_ids"]["count"] == 0
    assert analysis["leakage"]["images"]["count"] == 0
    captions = analysis["leakage"]["captions"]
    assert captions["is_leak"] is False and "not an error" in captions["meaning"]
    assert set(analysis["plots"]) == {
        "rating_histogram",
        "rating_vs_count",
        "caption_length",
        "top_words",
        "image_sizes",
        "extra_columns",
    }


def test_report_files(tiny, tmp_path):
    result = analyze(tiny, tmp_path / "report")
    assert json.loads((tmp_path / "report" / "analysis.json").read_text()) == json.loads(
        json.dumps(result)
    )
    for file in result["plots"].values():
        with Image.open(tmp_path / "report" / file) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_planted_leaks_are_found(tiny, tmp_path):
    dataset = datasets.load_from_disk(str(tiny))
    copied = dataset["train"].select([0])  # same product id (and image) now also in test
    duplicate = (
        dataset["validation"]
        .select([0])
        .map(  # same image bytes under a new id
            lambda row: {"product_id": "PLANTED-1", "caption": "planted caption"}
        )
    )
    twin = dataset["test"].select([0]).map(lambda row: {"product_id": "PLANTED-2"})
    test = datasets.concatenate_datasets([dataset["test"], copied, duplicate, twin])
    leaky = _save({**dataset, "test": test}, tmp_path / "leaky")

    result = analyze(leaky, tmp_path / "report", plots=False)
    assert result["plots"] == {} and not list((tmp_path / "report").glob("*.png"))
    assert result["oov"]["test"]["oov_tokens"] == result["oov"]["test"]["oov_types"] == 2
    assert sorted(result["oov"]["test"]["examples"]) == ["caption", "planted"]
    leakage = result["leakage"]
    duplicates = {n: s["image"]["duplicates_within_split"] for n, s in result["splits"].items()}
    assert duplicates == {
        "train": 0,
        "validation": 0,
        "test": 1,
    }  # the twin, not a cross-split leak
    product_ids = leakage["product_ids"]
    assert product_ids["count"] == 1 and product_ids["by_splits"] == {"train/test": 1}
    assert product_ids["examples"][0] == {
        "product_id": copied[0]["product_id"],
        "splits": ["train", "test"],
    }
    images = leakage["images"]
    assert images["count"] == 2
    assert images["by_splits"] == {"train/test": 1, "validation/test": 1}
    planted = [e for e in images["examples"] if "validation" in e["product_ids"]][0]
    assert planted["product_ids"] == {
        "validation": [dataset["validation"][0]["product_id"]],
        "test": ["PLANTED-1"],
    }
    assert leakage["captions"]["count"] >= 1  # the copied row's caption is in train and test


def test_caption_only_dataset(tiny, tmp_path, capsys):
    dataset = datasets.load_from_disk(str(tiny))
    no_ratings = {
        name: split.map(lambda row: {"rating": None, "rating_count": None}, features=split.features)
        for name, split in dataset.items()
    }
    path = _save(no_ratings, tmp_path / "captions_only")

    result = analyze(path)
    assert result["has_ratings"] is False
    assert "no ratings" in result["notes"][0]
    assert result["splits"]["train"]["rating"] == {
        "count": 0,
        "missing": len(dataset["train"]),
    }
    assert result["baselines"]["rating"]["skipped"] == "no ratings in the train split"
    assert result["baselines"]["caption"]["test_bleu"] is not None
    assert "rating_histogram" not in result["plots"] and "caption_length" in result["plots"]
    assert (path / "analysis" / "analysis.json").is_file()  # the default output folder

    from hf_dataset.__main__ import main

    assert main(["analyze", str(path)]) == 0
    assert "caption-only dataset" in capsys.readouterr().out


def test_caption_baseline_is_the_caption_metrics(tiny, tmp_path):
    """Mixed-case captions (BLEU is case-insensitive), blank train captions more common than any
    other and blank validation captions (the training scripts drop those rows): the baseline is the
    one training reports, `constant_caption_baseline`'s."""
    dataset = datasets.load_from_disk(str(tiny))
    blanks = {0: None, 1: "", 2: "   ", 3: "", 4: ""}

    def mixed_case(row, i):
        caption = row["caption"].upper() if i % 2 else row["caption"].title()
        return {"caption": blanks.get(i, caption)}

    train = dataset["train"].map(mixed_case, with_indices=True)
    assert Counter(train["caption"]).most_common(1)[0][0] == ""  # if blanks were candidates
    validation = dataset["validation"].map(
        lambda row, i: {"caption": blanks.get(i, row["caption"])}, with_indices=True
    )
    path = _save({**dataset, "train": train, "validation": validation}, tmp_path / "mixed")

    baseline = analyze(path, plots=False)["baselines"]["caption"]
    references = [c for c in validation["caption"] if c and c.strip()]
    assert len(references) == len(validation) - len(blanks) > 0
    expected = constant_caption_baseline(train["caption"], references)
    assert baseline["most_common_train_caption"] == expected["baseline_caption"]
    assert baseline["most_common_train_caption"].strip()
    assert baseline["validation_bleu"] == pytest.approx(expected["baseline_bleu"])
    assert baseline["validation_bleu"] > 0


def test_oov_counts_words_as_the_tokenizer_splits_them(tiny, tmp_path):
    """OOV counts what the model cannot write: "men’s" is one word, and another one than "men's"."""
    import re

    from modeling import build_caption_tokenizer

    dataset = datasets.load_from_disk(str(tiny))
    train_captions = ["Men’s T-Shirt with a pocket", "women's A-line dress, 3/4 sleeve"]
    validation_captions = ["men’s t-shirt", "Men's T-Shirt", "A-line dress, 50% off"]
    train = dataset["train"].map(
        lambda row, i: {"caption": train_captions[i % 2]}, with_indices=True
    )
    validation = dataset["validation"].map(
        lambda row, i: {"caption": validation_captions[i % 3]}, with_indices=True
    )
    path = _save({**dataset, "train": train, "validation": validation}, tmp_path / "apostrophes")
    result = analyze(path, plots=False)

    backend = build_caption_tokenizer(train["caption"], min_frequency=1).backend_tokenizer

    def tokenizer_words(caption: str) -> list[str]:  # its words, not its punctuation marks
        pieces = backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(caption))
        return [piece for piece, _ in pieces if re.match(r"\w", piece)]

    validation_words = [w for caption in validation["caption"] for w in tokenizer_words(caption)]
    unknown = [w for w in validation_words if backend.token_to_id(w) is None]
    oov = result["oov"]["validation"]
    assert oov["tokens"] == len(validation_words) and oov["oov_tokens"] == len(unknown) > 0
    assert set(oov["examples"]) == set(unknown) == {"men's", "50", "off"}
    top_words = dict(result["splits"]["train"]["caption"]["top_words"])
    assert top_words["men’s"] == (len(train) + 1) // 2 and "men" not in top_words


def test_some_ratings_missing(tiny, tmp_path):
    dataset = datasets.load_from_disk(str(tiny))
    train = dataset["train"].map(
        lambda row, i: {"rating": None} if i == 0 else {},
        with_indices=True,
        features=dataset["train"].features,
    )
    path = _save({**dataset, "train": train}, tmp_path / "partial")
    result = analyze(path, plots=False)
    kept = dataset["train"]["rating"][1:]
    assert result["has_ratings"] and result["notes"] == [
        f"train: 1 of {len(train)} ratings are null"
    ]
    assert result["splits"]["train"]["rating"]["count"] == len(kept)
    assert result["baselines"]["rating"]["train_mean"] == pytest.approx(statistics.fmean(kept))


def test_card_section_is_replaced_not_duplicated(tiny, tmp_path):
    path = tmp_path / "dataset"
    shutil.copytree(tiny, path)
    before = DatasetCard.load(path / "README.md").data.to_dict()
    for _ in range(2):
        analyze(path, update_card=True)
    card = DatasetCard.load(path / "README.md")
    assert card.text.count(CARD_START) == card.text.count(CARD_END) == 1
    assert card.data.to_dict() == before  # the YAML front matter is untouched and still parses
    section = card.text[card.text.index(CARD_START) : card.text.index(CARD_END)]
    assert "baseline rating: train mean" in section
    for file in ("rating_histogram.png", "image_sizes.png"):
        assert f"](analysis/{file})" in section and (path / "analysis" / file).is_file()


@pytest.mark.slow
def test_cli(tiny, tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "hf_dataset", "analyze", str(tiny), "--output", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert ok.returncode == 0, ok.stderr
    assert "split" in ok.stdout and "rating mean±std" in ok.stdout
    assert "baseline rating: train mean" in ok.stdout and "baseline caption:" in ok.stdout
    assert (tmp_path / "r" / "analysis.json").is_file()


def test_cli_errors_are_one_line(tmp_path, capsys):
    from hf_dataset.__main__ import main

    assert main(["analyze", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert error == f"error: dataset folder {tmp_path / 'nowhere'} does not exist\n"

    (tmp_path / "not_a_dataset").mkdir()
    assert main(["analyze", str(tmp_path / "not_a_dataset")]) == 2
    assert "is not a saved dataset (no dataset_dict.json)" in capsys.readouterr().err


def test_missing_columns_are_a_clear_error(tiny, tmp_path):
    dataset = datasets.load_from_disk(str(tiny))
    path = _save({n: s.remove_columns("caption") for n, s in dataset.items()}, tmp_path / "bad")
    with pytest.raises(BuildError, match="lacks the columns caption"):
        analyze(path)
