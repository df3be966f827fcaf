"""Caption metrics as an `evaluate` module, loaded by path: `evaluate.load("metrics/caption")`.

Kept in the repository because the Hub's metric scripts cannot be downloaded offline. One call gives
every caption metric the project reports (the keys of docs/DESIGN.md):

- `bleu`: corpus BLEU-4 by sacrebleu (0-100, 13a tokenisation, case-insensitive because the model
  writes lowercase words), one reference per prediction.
- The original project's word-overlap metrics, on lowercased word sets (`text.py`: runs of letters
  and digits with inner hyphens and apostrophes, as the caption tokenizer splits them), averaged
  over pairs:
  - `word_overlap` = mean of |pred words & ref words| / |ref words| (unigram recall; the original
    called this "BLEU", which it is not),
  - `jaccard` = mean of |pred words & ref words| / |pred words | ref words|,
  - `length_similarity` = mean of min(len pred, len ref) / max(len pred, len ref), lengths in words.
  A pair where both sides are empty counts 1, where one side is empty counts 0.
- `num_samples`: the number of (prediction, reference) pairs.
"""

from __future__ import annotations

import datasets
import evaluate
import sacrebleu

from .text import words

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): generated captions.
    references (`list[str]`): one true caption per prediction.
Returns:
    dict with `bleu`, `word_overlap`, `jaccard`, `length_similarity` (floats) and `num_samples` (int).
Example:
    >>> metric = evaluate.load("metrics/caption")
    >>> metric.compute(predictions=["red t-shirt"], references=["Red T-shirt"])["jaccard"]
    1.0
"""


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 1.0


def overlap_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    recall, jaccard, length = [], [], []
    for prediction, reference in zip(predictions, references, strict=True):
        pred_words, ref_words = words(prediction), words(reference)
        pred_set, ref_set = set(pred_words), set(ref_words)
        common = len(pred_set & ref_set)
        recall.append(_ratio(common, len(ref_set)) if ref_set else float(not pred_set))
        jaccard.append(_ratio(common, len(pred_set | ref_set)))
        shorter, longer = sorted((len(pred_words), len(ref_words)))
        length.append(_ratio(shorter, longer))
    count = max(1, len(predictions))
    return {
        "word_overlap": sum(recall) / count,
        "jaccard": sum(jaccard) / count,
        "length_similarity": sum(length) / count,
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Caption(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Post, 2018. A Call for Clarity in Reporting BLEU Scores (sacrebleu).",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        if not predictions:
            raise ValueError("no captions to score")
        bleu = sacrebleu.corpus_bleu(predictions, [references], lowercase=True).score
        return {
            "bleu": float(bleu),
            **overlap_metrics(predictions, references),
            "num_samples": len(predictions),
        }
