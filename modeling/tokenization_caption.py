"""Word-level caption tokenizer, built with `tokenizers` from the training captions only.

Product titles are short and their words are the unit that matters ("grey", "t-shirt", "puma"), so the
vocabulary is the `vocab_size` most frequent words seen at least `min_frequency` times in the train
split; every other word becomes [UNK]. Building it from the train split alone keeps the test split
honest: a word that only appears in test captions is unknown to the model, as it would be in use.

Text is NFKC-normalised and lowercased. Words keep inner hyphens and apostrophes ("t-shirt", "men's")
and every other punctuation mark is its own token. Encoding adds [BOS] ... [EOS]; decoding joins words
with spaces and removes the space before punctuation. The result is a plain `PreTrainedTokenizerFast`
(`tokenizer.json`), so `AutoTokenizer.from_pretrained` loads it without any code from this project.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import WordLevelTrainer
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # ids 0, 1, 2, 3: the defaults of ProductCaptionConfig
# A word as the caption metric splits it (metrics/caption/text.py), or one punctuation mark. A copy:
# a saved tokenizer loads without this repository (tested to agree in tests/test_metrics.py).
WORD = r"\w+(?:['’-]\w+)*|[^\w\s]"


def build_caption_tokenizer(
    captions: Iterable[str], vocab_size: int = 5000, min_frequency: int = 2, max_length: int = 32
) -> PreTrainedTokenizerFast:
    """Train a word-level tokenizer on `captions` (the train split's): at most `vocab_size` entries,
    the four special tokens included, and only words seen `min_frequency` times or more."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD), behavior="isolated")]
    )
    trainer = WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS
    )
    tokenizer.train_from_iterator(captions, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in (BOS, EOS)],
    )
    # WordPiece's decoder with no "##" pieces = join with spaces, then "word ," -> "word,"
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=max_length,
        padding_side="right",
    )


__all__ = ["build_caption_tokenizer", "SPECIAL_TOKENS"]
