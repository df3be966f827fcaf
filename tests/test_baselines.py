"""Nearest-neighbour retrieval and title-overlap figures (training/baselines.py), by hand."""

import pytest
import torch

from metrics import load_metric
from training.baselines import (
    compare_with_retrieval,
    nearest_neighbour_captions,
    normalize_title,
    title_overlap,
)


def test_nearest_neighbour_is_by_cosine_not_distance():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [10.0, 9.0]])
    captions = ["red dress", "blue shirt", "grey scarf"]
    queries = torch.tensor([[0.1, 0.0], [0.0, 5.0], [1.0, 1.0]])
    # [0.1, 0] is nearest to row 0 in angle; [1, 1] is closest in angle to [10, 9], not to [1, 0]
    assert nearest_neighbour_captions(train, captions, queries, chunk_size=2) == [
        "red dress",
        "blue shirt",
        "grey scarf",
    ]


def test_titles_compare_as_the_tokenizer_sees_them():
    assert normalize_title("Puma Men's  Grey T-shirt,") == "puma men's grey t-shirt ,"
    assert normalize_title("ＰＵＭＡ men") == "puma men"  # NFKC, as the tokenizer normalises


def test_title_overlap_by_hand():
    train = ["Red Dress", "Blue Shirt"]
    references = ["red dress", "Green Scarf", "blue   shirt", "Black Belt"]
    predictions = ["red dress", "red dress", "green scarf", "blue shirt"]
    overlap = title_overlap(train, references, predictions)
    assert overlap["test_titles_in_train"] == pytest.approx(0.5)
    assert overlap["copied_train_titles"] == pytest.approx(0.75)
    assert overlap["unseen_rows"] == [1, 3]


def test_compare_with_retrieval_scores_the_retrieved_titles():
    metric = load_metric("caption")
    train = ["red striped dress with a belt", "blue checked shirt with a pocket"]
    references = ["red striped dress with a belt", "blue checked shirt with two pockets"]
    features = torch.eye(2)
    results = compare_with_retrieval(
        metric, train, references, ["red striped dress with a belt"] * 2, features, features
    )
    expected = metric.compute(predictions=train, references=references)
    assert results["retrieval_bleu"] == pytest.approx(expected["bleu"])
    assert results["num_unseen_titles"] == 1 and results["test_titles_in_train"] == 0.5
    unseen = metric.compute(predictions=[train[1]], references=[references[1]])["bleu"]
    assert results["retrieval_bleu_unseen_titles"] == pytest.approx(unseen)
    assert results["bleu_unseen_titles"] == pytest.approx(
        metric.compute(predictions=[train[0]], references=[references[1]])["bleu"]
    )
