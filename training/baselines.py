"""What a caption model has to beat, besides the constant title: copying the title of the most
similar training photo (nearest-neighbour retrieval), and how much of the test set such copying
can reach at all (titles repeat across products)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import torch

from modeling.tokenization_caption import WORD


def normalize_title(title: str) -> str:
    """A title as the caption tokenizer sees it (NFKC, lower case, its word split), so that a
    generated caption and the catalogue title it copies compare equal."""
    return " ".join(re.findall(WORD, unicodedata.normalize("NFKC", title).lower()))


@torch.no_grad()
def nearest_neighbour_captions(
    train_features: torch.Tensor,
    train_captions: Sequence[str],
    query_features: torch.Tensor,
    chunk_size: int = 1024,
) -> list[str]:
    """For each query, the caption of the train row whose pooled feature is closest in cosine.

    train_features (N, D), query_features (Q, D): the frozen encoder's pooled features.
    """
    train = torch.nn.functional.normalize(train_features.float(), dim=-1)
    nearest = []
    for start in range(0, len(query_features), chunk_size):
        query = torch.nn.functional.normalize(
            query_features[start : start + chunk_size].float(), dim=-1
        )
        nearest += (query @ train.T).argmax(dim=-1).tolist()  # (chunk,)
    return [train_captions[i] for i in nearest]


def title_overlap(
    train_captions: Sequence[str], references: Sequence[str], predictions: Sequence[str]
) -> dict:
    """How often test titles occur verbatim in train, how often the predictions copy a train title,
    and the indices of the test rows whose title is new (for a BLEU on those alone)."""
    seen = {normalize_title(c) for c in train_captions}
    unseen = [i for i, ref in enumerate(references) if normalize_title(ref) not in seen]
    copied = sum(normalize_title(p) in seen for p in predictions)
    return {
        "test_titles_in_train": 1 - len(unseen) / max(1, len(references)),
        "copied_train_titles": copied / max(1, len(predictions)),
        "unseen_rows": unseen,
    }


def compare_with_retrieval(
    metric,
    train_captions: Sequence[str],
    references: Sequence[str],
    predictions: Sequence[str],
    train_features: torch.Tensor | None = None,
    test_features: torch.Tensor | None = None,
) -> dict:
    """Title overlap, BLEU on the test titles never seen in train, and, given pooled features, the
    nearest-neighbour baseline's metrics (`retrieval_<metric>` keys) on the same rows.

    `metric` is the loaded caption metric (`load_metric("caption")`).
    """
    overlap = title_overlap(train_captions, references, predictions)
    unseen = overlap.pop("unseen_rows")
    results = {**overlap, "num_unseen_titles": len(unseen)}

    def unseen_bleu(captions):
        picked = [captions[i] for i in unseen]
        return metric.compute(predictions=picked, references=[references[i] for i in unseen])[
            "bleu"
        ]

    if unseen:
        results["bleu_unseen_titles"] = unseen_bleu(predictions)
    if train_features is not None:
        retrieved = nearest_neighbour_captions(train_features, train_captions, test_features)
        scores = metric.compute(predictions=retrieved, references=references)
        results.update({f"retrieval_{k}": v for k, v in scores.items() if k != "num_samples"})
        if unseen:
            results["retrieval_bleu_unseen_titles"] = unseen_bleu(retrieved)
    return results
