"""Caption model, tokenizer, processor, generation and training script, with tiny configs on CPU."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from modeling import (
    ProductCaptionConfig,
    ProductCaptionModel,
    ProductCaptionProcessor,
    ProductImageProcessor,
    build_caption_tokenizer,
)
from modeling.modeling_caption import create_encoder

CAPTIONS = [
    "red striped t-shirt with a pocket",
    "blue plain dress with buttons",
    "black checked skirt with a belt",
    "Grey polka dot hoodie, with a star logo",
]


def tiny_config(tokenizer, **overrides) -> ProductCaptionConfig:
    kwargs = dict(
        encoder_name="test_vit",
        image_size=32,
        embed_dim=16,
        hidden_dim=32,
        attention_dim=16,
        vocab_size=len(tokenizer),
        max_length=12,
        dropout=0.0,
    )
    return ProductCaptionConfig(**(kwargs | overrides))


@pytest.fixture(scope="module")
def tokenizer():
    return build_caption_tokenizer(CAPTIONS, min_frequency=1, max_length=12)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return ProductCaptionModel(tiny_config(tokenizer)).eval()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)) for _ in range(4)]


@pytest.fixture(scope="module")
def processor(model, tokenizer):
    return ProductCaptionProcessor(ProductImageProcessor.from_timm(model.encoder, 32), tokenizer)


def test_tokenizer_round_trip(tokenizer):
    ids = tokenizer(CAPTIONS)["input_ids"]
    assert all(
        row[0] == tokenizer.bos_token_id and row[-1] == tokenizer.eos_token_id for row in ids
    )
    decoded = tokenizer.batch_decode(ids, skip_special_tokens=True)
    assert decoded == [c.lower() for c in CAPTIONS]  # lowercased; "t-shirt" and "hoodie," intact
    assert tokenizer.convert_ids_to_tokens(tokenizer("a zebra")["input_ids"])[2] == "[UNK]"
    # over-long captions are truncated to max_length and still end with EOS
    long = tokenizer(" ".join(["red"] * 40), truncation=True)["input_ids"]
    assert len(long) == 12 and long[-1] == tokenizer.eos_token_id


def test_tokenizer_vocabulary_is_top_k_with_min_count():
    tok = build_caption_tokenizer(["a a a b b c", "a b d"], vocab_size=6, min_frequency=2)
    assert set(tok.get_vocab()) == {"[PAD]", "[BOS]", "[EOS]", "[UNK]", "a", "b"}


def test_frozen_encoder_gets_no_gradients_and_every_decoder_parameter_does(
    tokenizer, processor, images
):
    torch.manual_seed(0)
    model = ProductCaptionModel(tiny_config(tokenizer, dropout=0.1)).train()
    assert not model.encoder.training and model.decoder.training  # frozen encoder stays in eval
    batch = processor(images=images, text=CAPTIONS)
    model(**batch).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.encoder.parameters())
    for name, p in model.decoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_unfrozen_encoder_trains(tokenizer, processor, images):
    model = ProductCaptionModel(tiny_config(tokenizer, freeze_encoder=False)).train()
    assert model.encoder.training
    model(**processor(images=images, text=CAPTIONS)).loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad)


def test_init_leaves_the_encoder_alone(tokenizer):
    torch.manual_seed(1)
    encoder = create_encoder("test_vit", 32)
    torch.manual_seed(1)
    model = ProductCaptionModel(
        tiny_config(tokenizer)
    )  # the encoder is built first, then post_init
    for key, value in encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key


def test_loss_ignores_padding(model, processor):
    batch = processor(text=CAPTIONS[:2])
    memory = torch.randn(2, 5, model.feature_dim)
    loss = model(encoder_hidden_states=memory, **batch).loss
    padded = {k: torch.nn.functional.pad(v, (0, 3), value=0) for k, v in batch.items()}
    padded["labels"][:, -3:] = -100
    assert torch.allclose(model(encoder_hidden_states=memory, **padded).loss, loss)


@pytest.mark.parametrize("attention", [True, False])
def test_greedy_equals_beam_search_with_one_beam(tokenizer, processor, images, attention):
    torch.manual_seed(0)
    model = ProductCaptionModel(tiny_config(tokenizer, attention=attention)).eval()
    pixel_values = processor(images=images)["pixel_values"]
    greedy = model.generate(pixel_values, return_dict_in_generate=True)
    one_beam = model._beam_search(model.encode(pixel_values), 1, 1.0, 11)
    assert torch.equal(greedy.sequences, one_beam[0])
    assert torch.allclose(greedy.sequences_scores, one_beam[1])
    # batched generation = one image at a time, from pixels or from precomputed features
    memory = model.encode(pixel_values)
    for i in range(len(images)):
        single = model.generate(encoder_hidden_states=memory[i : i + 1], num_beams=3)
        batched = model.generate(encoder_hidden_states=memory, num_beams=3)[i : i + 1]
        assert torch.equal(single[:, : batched.shape[1]], batched[:, : single.shape[1]])


def teacher_forced_log_prob(model, memory, sequence, eos_id):
    """Sum of log p(token) over a generated sequence, up to and including its EOS."""
    tokens = sequence.tolist()
    end = tokens.index(eos_id) + 1 if eos_id in tokens else len(tokens)
    ids = torch.tensor([tokens[:end]])
    log_probs = model(encoder_hidden_states=memory, input_ids=ids).logits.log_softmax(-1)
    return log_probs[0, :-1].gather(1, ids[0, 1:, None]).sum()


def test_beam_score_is_the_teacher_forced_log_probability(model, processor, images, tokenizer):
    memory = model.encode(processor(images=images)["pixel_values"])
    out = model.generate(
        encoder_hidden_states=memory, num_beams=4, length_penalty=0.0, return_dict_in_generate=True
    )
    for i in range(len(images)):
        expected = teacher_forced_log_prob(
            model, memory[i : i + 1], out.sequences[i], tokenizer.eos_token_id
        )
        assert out.sequences_scores[i].item() == pytest.approx(expected.item(), abs=1e-4)
    # and beam search finds a caption at least as likely as greedy's
    greedy = model.generate(
        encoder_hidden_states=memory, length_penalty=0.0, return_dict_in_generate=True
    )
    assert (out.sequences_scores >= greedy.sequences_scores - 1e-5).all()


def test_generate_is_deterministic(model, processor, images):
    pixel_values = processor(images=images)["pixel_values"]
    assert torch.equal(
        model.generate(pixel_values, num_beams=3), model.generate(pixel_values, num_beams=3)
    )


def test_save_load_identical(model, processor, images, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = ProductCaptionModel.from_pretrained(tmp_path).eval()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not any(p.requires_grad for p in loaded.encoder.parameters())
    pixel_values = processor(images=images)["pixel_values"]
    assert torch.equal(
        model.generate(pixel_values, num_beams=2), loaded.generate(pixel_values, num_beams=2)
    )
    assert not ProductCaptionModel.can_generate()  # our own generate(), not GenerationMixin's


def test_trust_remote_code_in_a_clean_process(model, processor, images, tmp_path):
    """Everything loads through the Auto classes with only the saved folder: no project code."""
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    expected = processor.batch_decode(
        model.generate(processor(images=images)["pixel_values"], num_beams=2)
    )
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    for i, image in enumerate(images):
        image.save(images_dir / f"{i}.png")
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from PIL import Image
        from transformers import AutoImageProcessor, AutoModel, AutoProcessor, AutoTokenizer
        assert "modeling" not in sys.modules
        path = {str(tmp_path / "model")!r}
        model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
        AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        AutoImageProcessor.from_pretrained(path, trust_remote_code=True)
        images = [Image.open(p) for p in sorted(Path({str(images_dir)!r}).glob("*.png"))]
        ids = model.generate(processor(images=images)["pixel_values"], num_beams=2)
        print(json.dumps([type(model).__name__, processor.batch_decode(ids)]))
        """
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    name, captions = json.loads(result.stdout.strip().splitlines()[-1])
    assert name == "ProductCaptionModel" and captions == expected


def test_config_validates_shapes():
    with pytest.raises(ValueError, match="distinct"):
        ProductCaptionConfig(vocab_size=10, pad_token_id=1, bos_token_id=1)
    with pytest.raises(ValueError, match="unknown timm backbone"):
        ProductCaptionModel(ProductCaptionConfig(encoder_name="no_such_net"))
