"""Caption model, tokenizer, processor, generation and training script, with tiny configs on CPU."""

import json
import os
import statistics
import subprocess
import sys
import textwrap
from unittest import mock

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import GenerationMixin

from modeling import (
    ProductCaptionConfig,
    ProductCaptionModel,
    ProductCaptionProcessor,
    ProductImageProcessor,
    build_caption_tokenizer,
)
from modeling.backbone import create_sized_backbone
from training.checkpoints import checkpoint_dirs
from training.script import UserError

from .conftest import REPO_ROOT, tensorboard_scalars, tiny_caption_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CAPTIONS = [
    "red striped t-shirt with a pocket",
    "blue plain dress with buttons",
    "black checked skirt with a belt",
    "Grey polka dot hoodie, with a star logo",
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_caption_tokenizer(CAPTIONS, min_frequency=1, max_length=12)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return ProductCaptionModel(tiny_caption_config(tokenizer)).eval()


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


@pytest.mark.parametrize("context_dim", [None, 8])
def test_frozen_encoder_gets_no_gradients_and_every_decoder_parameter_does(
    tokenizer, processor, images, context_dim
):
    torch.manual_seed(0)
    config = tiny_caption_config(tokenizer, dropout=0.1, context_dim=context_dim)
    model = ProductCaptionModel(config).train()
    assert not model.encoder.training and model.decoder.training  # frozen encoder stays in eval
    batch = processor(images=images, text=CAPTIONS)
    model(**batch).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.encoder.parameters())
    for name, p in model.decoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_unfrozen_encoder_trains(tokenizer, processor, images):
    model = ProductCaptionModel(tiny_caption_config(tokenizer, freeze_encoder=False)).train()
    assert model.encoder.training
    model(**processor(images=images, text=CAPTIONS)).loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad)


def test_init_leaves_the_encoder_alone(tokenizer):
    torch.manual_seed(1)
    encoder, _ = create_sized_backbone("test_vit", 32)
    torch.manual_seed(1)
    model = ProductCaptionModel(
        tiny_caption_config(tokenizer)
    )  # the encoder is built first, then post_init
    for key, value in encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key


@pytest.mark.parametrize("encoder, kwargs", [("test_vit", {"img_size": 32}), ("test_resnet", {})])
def test_encoder_weights_load_with_the_kwargs_it_was_built_with(
    tokenizer, tmp_path, encoder, kwargs
):
    from safetensors.torch import save_file

    model = ProductCaptionModel(tiny_caption_config(tokenizer, encoder_name=encoder))
    assert model.encoder_kwargs == kwargs
    torch.manual_seed(1)
    source, _ = create_sized_backbone(encoder, 32)
    save_file(source.state_dict(), tmp_path / "encoder.safetensors")
    assert model.load_pretrained_encoder(str(tmp_path / "encoder.safetensors"))
    for key, value in source.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key


def test_train_last_blocks_trains_the_top_of_a_frozen_encoder(tokenizer, images):
    """The encoder's last block and head conv learn, the rest stays frozen; the cache's input
    (`frozen_features`) gives the same captions and the same loss as the photos."""
    torch.manual_seed(0)
    config = tiny_caption_config(tokenizer, encoder_name="test_efficientnet", train_last_blocks=1)
    model = ProductCaptionModel(config).train()
    enc = model.encoder
    trained = {id(p) for m in (enc.blocks[-1], enc.conv_head, enc.bn2) for p in m.parameters()}
    for name, param in enc.named_parameters():
        assert param.requires_grad == (id(param) in trained), name
    assert enc.blocks[-1].training and enc.bn2.training
    assert not enc.blocks[0].training and not enc.bn1.training

    processor = ProductCaptionProcessor(ProductImageProcessor.from_timm(enc, 32), tokenizer)
    batch = processor(images=images[:2], text=CAPTIONS[:2])
    pixels = batch.pop("pixel_values")
    model.eval()
    frozen = model.frozen_features(pixels)
    assert frozen.ndim == 4 and frozen.shape[1] == enc.blocks[-1][0].conv_pw.in_channels
    assert torch.allclose(model.memory_from_frozen(frozen), model.encode(pixels), atol=1e-6)
    # the trained layers run in channels_last: the memory of the contiguous layout, token for token
    contiguous = model._memory_of(enc.bn2(enc.conv_head(enc.blocks[-1:](frozen.contiguous()))))
    assert torch.allclose(model.memory_from_frozen(frozen), contiguous, atol=1e-5)
    assert torch.equal(
        model.generate(frozen_features=frozen, num_beams=2),
        model.generate(pixel_values=pixels, num_beams=2),
    )
    model.train()
    loss = model(frozen_features=frozen, **batch).loss
    loss.backward()
    assert enc.conv_head.weight.grad.abs().sum() > 0
    assert enc.blocks[-1][0].conv_pw.weight.grad.abs().sum() > 0
    assert enc.conv_stem.weight.grad is None
    with pytest.raises(ValueError, match="exactly one of"):
        model(frozen_features=frozen, pixel_values=pixels, **batch)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"train_last_blocks": 1, "freeze_encoder": False}, "needs freeze_encoder=True"),
        ({"train_last_blocks": 1, "encoder_name": "test_vit"}, "not an EfficientNet-style CNN"),
        ({"train_last_blocks": 9, "encoder_name": "test_efficientnet"}, "has 5 blocks"),
        ({"train_last_blocks": -1}, "must be >= 0"),
    ],
)
def test_train_last_blocks_refuses_what_it_cannot_do(tokenizer, changes, message):
    with pytest.raises(ValueError, match=message):
        ProductCaptionModel(tiny_caption_config(tokenizer, **changes))


def test_loss_ignores_padding(model, processor):
    batch = processor(text=CAPTIONS[:2])
    memory = torch.randn(2, 5, model.feature_dim)
    loss = model(encoder_hidden_states=memory, **batch).loss
    padded = {k: torch.nn.functional.pad(v, (0, 3), value=0) for k, v in batch.items()}
    padded["labels"][:, -3:] = -100
    assert torch.allclose(model(encoder_hidden_states=memory, **padded).loss, loss)


def varied_lengths_model(tokenizer, **overrides) -> ProductCaptionModel:
    """A random decoder whose captions end at many different steps (EOS likely from step 3 on)."""
    torch.manual_seed(0)
    model = ProductCaptionModel(tiny_caption_config(tokenizer, **overrides)).eval()
    with torch.no_grad():
        for param in model.decoder.parameters():
            param.normal_(0.0, 0.5)
        model.decoder.lm_head.bias.zero_()
    return model


def mixin_generate(model, memory, **kwargs):
    """transformers' own loop, never the fast path: what `_fast_search` must reproduce."""
    bos = torch.full((len(memory), 1), model.config.bos_token_id)
    return GenerationMixin.generate(model, input_ids=bos, encoder_hidden_states=memory, **kwargs)


@pytest.mark.parametrize("attention, context_dim", [(True, None), (False, None), (True, 8)])
@pytest.mark.parametrize("num_beams, length_penalty", [(1, 1.0), (2, 1.0), (3, 0.0), (4, 2.0)])
def test_the_fast_path_gives_the_mixins_token_ids(
    tokenizer, attention, context_dim, num_beams, length_penalty
):
    model = varied_lengths_model(tokenizer, attention=attention, context_dim=context_dim)
    memory = torch.randn(24, 5, model.feature_dim)
    with mock.patch.object(model, "_fast_search", wraps=model._fast_search) as fast:
        ids = model.generate(
            encoder_hidden_states=memory, num_beams=num_beams, length_penalty=length_penalty
        )
    assert fast.call_count == 1  # a plain config took the fast path...
    expected = mixin_generate(model, memory, num_beams=num_beams, length_penalty=length_penalty)
    assert torch.equal(ids, expected)  # ... and gave the mixin's ids, padding and length included
    eos = ids == model.config.eos_token_id
    lengths = torch.where(eos.any(dim=1), eos.float().argmax(dim=1), ids.shape[1])
    assert len(set(lengths.tolist())) >= 2  # captions of several lengths were compared


@pytest.mark.parametrize(
    "options",
    [{"no_repeat_ngram_size": 2}, {"do_sample": True}, {"return_dict_in_generate": True},
     {"min_new_tokens": 3}, {"num_return_sequences": 2, "num_beams": 2}],
)  # fmt: skip
def test_every_other_config_goes_through_the_mixin(model, options):
    memory = torch.randn(2, 5, model.feature_dim)
    with mock.patch.object(model, "_fast_search", wraps=model._fast_search) as fast:
        model.generate(encoder_hidden_states=memory, **options)
    assert fast.call_count == 0


@pytest.mark.skipif(
    not (REPO_ROOT / "outputs/demo/caption/model.safetensors").is_file(),
    reason="needs the make demo models (outputs/demo)",
)
@pytest.mark.parametrize("num_beams", [1, 3])
def test_the_fast_path_gives_the_mixins_captions_on_the_demo_test_split(num_beams):
    import datasets

    demo = REPO_ROOT / "outputs/demo"
    model = ProductCaptionModel.from_pretrained(demo / "caption").eval()
    processor = ProductCaptionProcessor.from_pretrained(demo / "caption")
    test = datasets.load_from_disk(demo / "dataset")["test"]
    with torch.no_grad():
        memory = model.encode(processor(images=list(test["image"]))["pixel_values"])
    fast = model.generate(encoder_hidden_states=memory, num_beams=num_beams)
    assert torch.equal(fast, mixin_generate(model, memory, num_beams=num_beams))


def test_batched_generation_equals_one_image_at_a_time(tokenizer):
    """Greedy drops finished rows from its batch; beams run side by side: neither changes a caption."""
    model = varied_lengths_model(tokenizer)
    memory = torch.randn(16, 5, model.feature_dim)
    for num_beams in (1, 3):
        batched = model.generate(encoder_hidden_states=memory, num_beams=num_beams)
        for i in range(16):
            single = model.generate(encoder_hidden_states=memory[i : i + 1], num_beams=num_beams)
            n = single.shape[1]
            assert torch.equal(batched[i, :n], single[0])


def test_beams_share_their_image_tensors(model):
    """The fast path's beams read one copy of each image's tokens (the mixin copies them per beam)."""
    memory = torch.randn(2, 5, model.feature_dim)
    with torch.no_grad():
        (pooled, tokens, projected, _), state = model.decoder.start(memory, num_beams=3)
    assert tokens.shape[0] == projected.shape[0] == 2  # B, not B * K
    assert pooled.shape[0] == state[0][0].shape[0] == 6  # the per-beam state: B * K rows


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
        encoder_hidden_states=memory, num_beams=4, length_penalty=0.0, output_scores=True,
        return_dict_in_generate=True,
    )  # fmt: skip
    eos = tokenizer.eos_token_id
    for i in range(len(images)):
        expected = teacher_forced_log_prob(model, memory[i : i + 1], out.sequences[i], eos)
        assert out.sequences_scores[i].item() == pytest.approx(expected.item(), abs=1e-4)
    # and beam search finds a caption at least as likely as greedy's
    greedy = model.generate(encoder_hidden_states=memory)
    for i in range(len(images)):
        greedy_score = teacher_forced_log_prob(model, memory[i : i + 1], greedy[i], eos)
        assert out.sequences_scores[i] >= greedy_score - 1e-5


def test_a_projected_context_saves_loads_and_scores_like_teacher_forcing(
    tokenizer, processor, images, tmp_path
):
    torch.manual_seed(0)
    model = ProductCaptionModel(tiny_caption_config(tokenizer, context_dim=8)).eval()
    assert model.decoder.cells[0].input_size == 16 + 8  # embed + context, not embed + encoder width
    model.save_pretrained(tmp_path)
    loaded = ProductCaptionModel.from_pretrained(tmp_path).eval()
    memory = model.encode(processor(images=images)["pixel_values"])
    out = loaded.generate(
        encoder_hidden_states=memory, num_beams=3, length_penalty=0.0, output_scores=True,
        return_dict_in_generate=True,
    )  # fmt: skip
    plain = model.generate(encoder_hidden_states=memory, num_beams=3, length_penalty=0.0)
    assert torch.equal(out.sequences, plain)
    expected = teacher_forced_log_prob(model, memory[:1], out.sequences[0], tokenizer.eos_token_id)
    assert out.sequences_scores[0].item() == pytest.approx(expected.item(), abs=1e-4)


@pytest.mark.parametrize("encoder, image_size", [("test_vit", 32), ("test_resnet", 64)])
def test_attention_weights_sum_to_one_and_match_the_mixins(tokenizer, encoder, image_size):
    torch.manual_seed(0)
    config = tiny_caption_config(tokenizer, encoder_name=encoder, image_size=image_size,
                                 initializer_range=1.0)  # fmt: skip
    model = ProductCaptionModel(config).eval()
    with torch.no_grad():  # EOS likely from step 3 on: captions of different lengths in one batch
        model.decoder.lm_head.bias[config.eos_token_id] = 1.5
    pixels = torch.randn(4, 3, image_size, image_size)
    ids = model.generate(pixels)
    # the app's per-word maps: the caption teacher-forced, each position's weights over the tokens
    attentions = model(pixel_values=pixels, input_ids=ids, output_attentions=True).attentions
    features = model.encoder.forward_features(pixels)
    spatial = features.shape[1] - model.encoder.num_prefix_tokens if features.ndim == 3 else (
        features.shape[2] * features.shape[3])  # fmt: skip
    assert spatial > 1 and attentions.shape == (4, ids.shape[1], spatial)
    assert torch.allclose(attentions.sum(dim=-1), torch.ones(4, ids.shape[1]), atol=1e-5)
    # the same weights as the mixin's per-step `output_attentions` while it generated the caption
    out = model.generate(pixels, output_attentions=True, return_dict_in_generate=True)
    assert torch.equal(out.sequences, ids)
    steps = torch.cat(out.attentions, dim=1)  # one (4, 1, N) tensor per generated token
    assert torch.allclose(steps, attentions[:, : steps.shape[1]], atol=1e-6)


def test_attention_weights_need_an_attention_model(tokenizer):
    model = ProductCaptionModel(tiny_caption_config(tokenizer, attention=False)).eval()
    with pytest.raises(ValueError, match="attention model"):
        model(pixel_values=torch.randn(1, 3, 32, 32), input_ids=torch.ones(1, 1, dtype=torch.long),
              output_attentions=True)  # fmt: skip


def test_attention_figure_has_one_map_per_word(model, processor, images):
    from serving.attention import attention_figure, caption_attention, letterbox_box

    caption, words, weights = caption_attention(model, processor, images[0], num_beams=2)
    assert words and "".join(words).replace(" ", "") == caption.replace(" ", "")  # its words
    assert weights.shape == (
        len(words),
        model.encode(processor(images=images[:1])["pixel_values"]).shape[1] - 1,
    )
    figure = attention_figure(images[0], words, weights, side=32)
    shown = [ax for ax in figure.axes if ax.images]
    assert len(shown) == len(words) + 1  # the photo, then one heatmap per word
    assert all(len(ax.images) == 2 for ax in shown[1:])
    # a 40 x 30 (tall) photo in a 32 px letterbox: 24 px wide, centred
    assert letterbox_box(30, 40, 32) == (4.0, 0.0, 28.0, 32.0)


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
    assert ProductCaptionModel.can_generate()  # transformers' GenerationMixin


@pytest.mark.slow
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
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        ProductCaptionConfig(label_smoothing=1.0)


def test_config_is_strict():
    from huggingface_hub.errors import StrictDataclassFieldValidationError

    with pytest.raises(StrictDataclassFieldValidationError, match="freeze_encoder"):
        ProductCaptionConfig(freeze_encoder="false")  # a truthy string would freeze the encoder
    config = ProductCaptionConfig()
    with pytest.raises(StrictDataclassFieldValidationError, match="hidden_dim"):
        config.hidden_dim = "256"


def test_label_smoothing_changes_the_training_loss_only(model, processor, tokenizer):
    batch = tokenizer(["red dress", "blue striped shirt"], padding=True, return_tensors="pt")
    memory = torch.randn(2, 5, model.feature_dim)
    inputs = dict(
        encoder_hidden_states=memory, input_ids=batch["input_ids"], labels=batch["input_ids"]
    )
    plain = model.eval()(**inputs).loss
    model.config.label_smoothing = 0.2
    try:
        assert torch.equal(model.eval()(**inputs).loss, plain)  # evaluation never smooths
        smoothed = model.train()(**inputs).loss
    finally:
        model.config.label_smoothing = 0.0
        model.eval()
    assert not torch.allclose(smoothed, plain)


# ---------------------------------------------------------------- train_caption.py


def train_args(dataset, output_dir, cache_dir, *extra):
    return [
        "--dataset", str(dataset), "--output_dir", str(output_dir), "--cache_dir", str(cache_dir),
        "--encoder", "test_vit", "--pretrained_encoder", "false", "--image_size", "32",
        "--embed_dim", "16", "--hidden_dim", "32", "--attention_dim", "16", "--min_word_count", "1",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
        "--learning_rate", "5e-3", "--num_beams", "2", "--seed", "0", "--dropout", "0",
        "--attention_plots", "0", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_synthetic, tmp_path_factory):
    """One short training run shared by the tests below: (output dir, cache dir, results)."""
    import train_caption

    root = tmp_path_factory.mktemp("caption")
    extra = ["--num_train_epochs", "3", "--attention_plots", "1"]
    results = train_caption.main(train_args(tiny_synthetic, root / "run", root / "cache", *extra))
    return root / "run", root / "cache", results


def test_training_writes_model_results_and_plots(trained, tiny_synthetic):
    out, _, results = trained
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json",
                 "modeling_caption.py", "eval_results.json", "training_args.json", "plots/caption_training.png",
                 "plots/caption_samples.png", "plots/attention_0.png"):  # fmt: skip
        assert (out / name).is_file(), name
    assert not (out / "plots/attention_1.png").exists()  # --attention_plots 1
    saved = json.loads((out / "eval_results.json").read_text())
    assert saved == pytest.approx(results)
    for key in ("bleu", "word_overlap", "jaccard", "length_similarity", "baseline_bleu",
                "retrieval_bleu", "test_titles_in_train", "copied_train_titles"):  # fmt: skip
        assert isinstance(saved[key], float), key
    assert 0 <= saved["num_unseen_titles"] <= saved["num_samples"]
    assert saved["num_samples"] > 0 and saved["split"] == "test" and saved["num_beams"] == 2
    # the processor records the training photos' resolution, and the card states it
    photos = datasets.load_from_disk(str(tiny_synthetic))["train"]["image"]
    side = round(statistics.median(max(photo.size) for photo in photos))
    processor = json.loads((out / "processor_config.json").read_text())["image_processor"]
    assert processor["training_resolution"] == side
    assert f"The training photos were {side} px" in (out / "README.md").read_text()
    history = json.loads((out / "training_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(h["seconds"] > h["train_seconds"] > 0 and 0 <= h["val_bleu"] <= 100 for h in history)
    timings = json.loads((out / "timings.json").read_text())  # where the time went
    assert list(timings) == [
        "data_and_model",
        "feature_cache",
        "prepare",
        "epochs",
        "test",
        "outputs",
    ]
    assert all(seconds >= 0 for seconds in timings.values())
    assert timings["epochs"] >= sum(h["seconds"] for h in history) - 0.1


def test_tensorboard_gets_the_losses_and_bleu_of_every_epoch(trained):
    out, _, results = trained
    logged = tensorboard_scalars(out / "runs")
    history = json.loads((out / "training_history.json").read_text())
    for tag, key in [("train/loss", "train_loss"), ("eval/loss", "val_loss"),
                     ("eval/bleu", "val_bleu"), ("train/learning_rate", "lr")]:  # fmt: skip
        assert logged[tag] == pytest.approx({h["epoch"]: h[key] for h in history}), tag
    assert logged["test/bleu"] == pytest.approx({3: results["bleu"]})


def test_a_tracker_that_is_not_installed_is_one_clear_error(tmp_path):
    import importlib.util

    import train_caption

    if importlib.util.find_spec("trackio") is not None:
        pytest.skip("trackio is installed")
    args = ["--dataset", "unused", "--output_dir", str(tmp_path), "--report_to"]
    with pytest.raises(UserError, match="--report_to trackio: trackio is not installed"):
        train_caption.parse_args([*args, "tensorboard", "trackio"])
    with pytest.raises(UserError, match="--report_to tensorbored: not a known tracker"):
        train_caption.parse_args([*args, "tensorbored"])
    assert train_caption.parse_args([*args, "none"])[1].report_to == []
    assert "tensorboard" in train_caption.parse_args([*args, "all"])[1].report_to


def test_second_run_reuses_the_feature_cache(trained, tiny_synthetic, tmp_path, monkeypatch):
    import train_caption

    _, cache, _ = trained
    assert len(list(cache.glob("*.safetensors"))) == 3  # train, validation, test

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although its features are cached")

    monkeypatch.setattr(ProductCaptionModel, "encode", no_encoder)
    train_caption.main(
        train_args(tiny_synthetic, tmp_path / "again", cache, "--num_train_epochs", "1")
    )
    assert len(list(cache.glob("*.safetensors"))) == 3


def test_a_bf16_run_on_cpu_caches_features_of_its_own(trained, tiny_synthetic, tmp_path):
    """bf16 runs on a CPU (autocast); its features, encoded in bf16 by torch, get their own cache
    files; with ONNX Runtime (fp32 whatever the precision) it reuses the fp32 run's."""
    import shutil

    from safetensors.torch import load_file

    import train_caption

    _, fp32_cache, _ = trained
    cache = tmp_path / "cache"
    shutil.copytree(fp32_cache, cache)
    before = {p.name for p in fp32_cache.glob("*.safetensors")}
    extra = ["--num_train_epochs", "1", "--mixed_precision", "bf16"]
    train_caption.main(train_args(tiny_synthetic, tmp_path / "ort", cache, *extra))
    assert {p.name for p in cache.glob("*.safetensors")} == before
    extra += ["--cache_engine", "torch"]
    results = train_caption.main(train_args(tiny_synthetic, tmp_path / "run", cache, *extra))
    assert 0 <= results["bleu"] <= 100
    new = sorted(p for p in cache.glob("*.safetensors") if p.name not in before)
    assert len(new) == 3
    bf16 = load_file(next(p for p in new if p.name.startswith("train-")))["features"].float()
    fp32 = load_file(next(fp32_cache.glob("train-*.safetensors")))["features"].float()
    cosine = torch.nn.functional.cosine_similarity(bf16.flatten(1), fp32.flatten(1))
    assert not torch.equal(bf16, fp32) and cosine.min() > 0.99


def test_hflip_train_caches_the_mirrored_train_photos_and_draws_both(
    trained, tiny_synthetic, tmp_path
):
    """--hflip_train: a fourth cache file, the train photos mirrored before the encoder, and the
    train rows drawn from either copy; refused where there is no cache to augment."""
    import shutil

    import datasets
    from safetensors.torch import load_file

    import train_caption
    from training.captions import CaptionRows

    _, first_cache, _ = trained
    cache = tmp_path / "cache"
    shutil.copytree(first_cache, cache)
    extra = ["--num_train_epochs", "1", "--hflip_train"]
    results = train_caption.main(train_args(tiny_synthetic, tmp_path / "run", cache, *extra))
    assert 0 <= results["bleu"] <= 100
    (mirrored_file,) = cache.glob("train_hflip-*.safetensors")
    assert len(list(cache.glob("*.safetensors"))) == 4
    mirrored = load_file(mirrored_file)["features"].float()

    model = ProductCaptionModel.from_pretrained(
        tmp_path / "run"
    ).eval()  # frozen: encoder as loaded
    processor = ProductCaptionProcessor.from_pretrained(tmp_path / "run")
    image = datasets.load_from_disk(str(tiny_synthetic))["train"][0]["image"]
    pixels = processor.image_processor.eval_transform()(image)[None]
    with torch.no_grad():
        expected = model.frozen_features(pixels.flip(-1))[0]
        unflipped = model.frozen_features(pixels)[0]
    assert torch.allclose(mirrored[0], expected, atol=1e-2)
    assert not torch.allclose(mirrored[0], unflipped, atol=1e-2)

    features, flipped = torch.zeros(1, 2), torch.ones(1, 2)
    rows = CaptionRows([[1, 2]], features, flipped=flipped)
    torch.manual_seed(0)
    drawn = {rows[0]["encoder_hidden_states"][0].item() for _ in range(50)}
    assert drawn == {0.0, 1.0}
    with pytest.raises(UserError, match="--hflip_train is for cached features"):
        train_caption.parse_args(["--dataset", "x", "--output_dir", "y", "--hflip_train",
                                  "--freeze_encoder", "false"])  # fmt: skip


def test_training_the_last_encoder_block_from_its_cached_input(tiny_synthetic, tmp_path):
    """--train_last_blocks 1: the cache holds the block's input, the saved model has the loaded
    encoder with only its top changed, and retrieval compares the loaded encoder's features."""
    from safetensors.torch import load_file, save_file

    import train_caption

    torch.manual_seed(3)
    source, _ = create_sized_backbone("test_efficientnet", 32)
    save_file(source.state_dict(), tmp_path / "encoder.safetensors")
    extra = ["--encoder", "test_efficientnet", "--pretrained_encoder", str(tmp_path / "encoder.safetensors"),
             "--train_last_blocks", "1", "--encoder_learning_rate", "1e-2", "--num_train_epochs", "2"]  # fmt: skip
    results = train_caption.main(
        train_args(tiny_synthetic, tmp_path / "run", tmp_path / "cache", *extra)
    )
    assert 0 <= results["bleu"] <= 100 and 0 <= results["retrieval_bleu"] <= 100
    cached = [load_file(p)["features"] for p in (tmp_path / "cache").glob("*.safetensors")]
    assert len(cached) == 3 and all(t.ndim == 4 for t in cached)  # (rows, C, h, w)

    card = " ".join((tmp_path / "run" / "README.md").read_text().split())
    assert "frozen but for its last 1 block(s) and head convolution" in card
    model = ProductCaptionModel.from_pretrained(tmp_path / "run")
    assert model.config.train_last_blocks == 1
    saved, loaded = model.encoder.state_dict(), source.state_dict()
    top = ("blocks.4.", "conv_head.", "bn2.")
    for key, value in loaded.items():
        if key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(saved[key], value) != key.startswith(top), key


def test_model_card_and_update_card(trained, tiny_synthetic, tmp_path):
    """The card of a trained model holds its test metrics; evaluate_models --update-card swaps them."""
    import shutil

    from huggingface_hub import ModelCard

    import evaluate_models

    out, _, results = trained
    card = ModelCard.load(out / "README.md")
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {
        key: pytest.approx(results[key])
        for key in ("bleu", "word_overlap", "jaccard", "length_similarity")
    }
    assert "](plots/caption_samples.png)" in card.text and "trained on synthetic data" in card.text
    assert "python train_caption.py --dataset" in card.text  # not "accelerate launch": a plain run
    copy = tmp_path / "model"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("checkpoints"))
    got = evaluate_models.main(
        [
            "--model",
            str(copy),
            "--dataset",
            str(tiny_synthetic),
            "--split",
            "validation",
            "--update-card",
        ]
    )
    card = ModelCard.load(copy / "README.md")
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["bleu"] == pytest.approx(
        got["bleu"]
    )
    assert card.text.count("<!-- metrics:start -->") == 1


def test_evaluate_models_matches_training_results(trained, tiny_synthetic, tmp_path, auto_loads):
    import evaluate_models

    out, _, results = trained
    got = evaluate_models.main(
        [
            "--model",
            str(out),
            "--dataset",
            str(tiny_synthetic),
            "--num_beams",
            "2",
            "--output",
            str(tmp_path / "eval.json"),
        ]  # fmt: skip
    )
    for key in (
        "bleu",
        "word_overlap",
        "jaccard",
        "length_similarity",
        "num_samples",
        "baseline_bleu",
    ):
        assert got[key] == pytest.approx(results[key], abs=1e-6), key
    # one path for both families: the Auto classes, with the saved code allowed (auto_map)
    assert {("ProductCaptionModel", True), ("ProductCaptionProcessor", True)} <= set(auto_loads)


def test_resumed_run_ends_where_an_uninterrupted_one_does(trained, tiny_synthetic, tmp_path):
    from safetensors.torch import load_file

    import train_caption

    out, cache, results = trained
    args = train_args(tiny_synthetic, tmp_path / "resumed", cache, "--num_train_epochs", "3")
    assert train_caption.main(args + ["--stop_after_epochs", "1"]) == {}
    assert [p.name for p in checkpoint_dirs(tmp_path / "resumed")] == ["epoch_1"]
    resumed = train_caption.main(args + ["--resume_from_checkpoint", "latest"])
    assert resumed == pytest.approx(results)
    a, b = (
        load_file(out / "model.safetensors"),
        load_file(tmp_path / "resumed" / "model.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_grouped_by_length_resumes_where_it_stopped(trained, tiny_synthetic, tmp_path):
    import train_caption

    _, cache, _ = trained
    extra = ("--num_train_epochs", "2", "--group_by_length", "true")
    whole = train_caption.main(train_args(tiny_synthetic, tmp_path / "whole", cache, *extra))
    args = train_args(tiny_synthetic, tmp_path / "resumed", cache, *extra)
    assert train_caption.main(args + ["--stop_after_epochs", "1"]) == {}
    assert train_caption.main(args + ["--resume_from_checkpoint", "latest"]) == pytest.approx(whole)


def test_group_by_length_batches_similar_captions_in_a_seeded_order_per_epoch():
    """Every row once per epoch; a batch pads less than a shuffled one; the order is the seed's and
    the epoch's, and two processes' batches of 4 together are one process's batch of 8."""
    import types

    import train_caption
    from training.captions import CaptionRows, make_collate

    generator = torch.Generator().manual_seed(0)
    token_ids = [
        [1] + [5] * int(n) + [2] for n in torch.randint(1, 20, (400,), generator=generator)
    ]
    rows = CaptionRows(token_ids, features=torch.zeros(400, 2))
    args = types.SimpleNamespace(group_by_length=True, seed=3)

    def epoch_order(loader, epoch):
        loader.sampler.set_epoch(epoch)
        return [batch["index"].tolist() for batch in loader]

    kwargs = dict(collate_fn=make_collate(0))
    grouped = train_caption.make_train_loader(rows, 8, args, **kwargs)
    first = epoch_order(grouped, 1)
    assert sorted(sum(first, [])) == list(range(400))
    assert epoch_order(grouped, 1) == first and epoch_order(grouped, 2) != first

    def padded(batches):
        return sum(len(b) * max(len(token_ids[i]) for i in b) for b in batches)

    plain = types.SimpleNamespace(group_by_length=False)
    shuffled = train_caption.make_train_loader(rows, 8, plain, **kwargs)
    assert padded(first) < 0.8 * padded([b["index"].tolist() for b in shuffled])
    halves = epoch_order(train_caption.make_train_loader(rows, 4, args, 2, **kwargs), 1)
    assert [a + b for a, b in zip(halves[::2], halves[1::2], strict=True)] == first


def test_bad_datasets_give_clear_errors(tiny_synthetic, tmp_path, capsys):
    import datasets

    import train_caption

    data = datasets.load_from_disk(str(tiny_synthetic))
    data.remove_columns("caption").save_to_disk(str(tmp_path / "no_caption"))
    with pytest.raises(UserError, match="no 'caption' column"):
        train_caption.main(train_args(tmp_path / "no_caption", tmp_path / "o1", tmp_path / "c"))
    with pytest.raises(UserError, match="dataset folder not found"):
        train_caption.main(train_args(tmp_path / "missing", tmp_path / "o2", tmp_path / "c"))

    # empty captions are dropped and counted; over-long ones are truncated (EOS kept) and counted
    def edit(row, i):
        if i % 7 == 0:
            row["caption"] = "  " if i % 2 else ""
        elif i % 5 == 0:
            row["caption"] = " ".join([row["caption"]] * 10)
        return row

    data.map(edit, with_indices=True).save_to_disk(str(tmp_path / "messy"))
    train_caption.main(
        train_args(
            tmp_path / "messy",
            tmp_path / "o3",
            tmp_path / "c",
            "--num_train_epochs",
            "1",
            "--max_length",
            "16",
        )  # fmt: skip
    )
    printed = capsys.readouterr().out
    assert "dropped rows with an empty caption: {'train': " in printed
    assert (
        "train captions truncated to 16 tokens" in printed
        and " 0 train captions truncated" not in printed
    )


@pytest.mark.slow
def test_two_processes_give_the_metrics_of_one(trained, tiny_synthetic, tmp_path):
    """`accelerate launch --cpu --num_processes 2` with half the per-device batch sees the same samples
    per optimiser step as one process, and the loss is normalised by the global token count, so the
    gradients agree up to float summation order: metrics within 1 BLEU point / 0.02."""
    out, cache, results = trained
    args = train_args(tiny_synthetic, tmp_path / "ddp", cache, "--num_train_epochs", "3")
    args[args.index("--per_device_train_batch_size") + 1] = "4"
    # accelerate 1.15's `launch --cpu --num_processes 2` starts ONE process (its simple launcher);
    # two CPU processes need the torchrun launcher (--multi_gpu) with ACCELERATE_USE_CPU=1
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "train_caption.py", *args]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processes" in result.stdout  # really distributed
    ddp = json.loads((tmp_path / "ddp" / "eval_results.json").read_text())
    assert ddp["num_samples"] == results["num_samples"]  # gather_for_metrics drops the padding
    assert ddp["bleu"] == pytest.approx(results["bleu"], abs=1.0)
    for key in ("word_overlap", "jaccard", "length_similarity", "best_val_bleu"):
        assert ddp[key] == pytest.approx(
            results[key], abs=0.02 if key != "best_val_bleu" else 1.0
        ), key


def test_caption_metrics_load_by_path_offline():
    import evaluate

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    metric = evaluate.load(os.path.join(REPO, "metrics", "caption"))
    perfect = metric.compute(
        predictions=["red t-shirt with a pocket"], references=["Red T-shirt with a pocket"]
    )
    assert perfect == {"bleu": pytest.approx(100.0), "word_overlap": 1.0, "jaccard": 1.0,
                       "length_similarity": 1.0, "num_samples": 1}  # fmt: skip
    got = metric.compute(
        predictions=["blue dress", "grey puma shirt"],
        references=["blue plain dress", "puma men grey t-shirt"],
    )
    # pair 1: 2/3 recall, 2/3 jaccard, 2/3 length; pair 2: 2/4, 2/5, 3/4
    assert got["word_overlap"] == pytest.approx((2 / 3 + 2 / 4) / 2)
    assert got["jaccard"] == pytest.approx((2 / 3 + 2 / 5) / 2)
    assert got["length_similarity"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert 0.0 <= got["bleu"] < 100.0 and got["num_samples"] == 2


def test_the_sharp_photos_study_scores_photos_as_they_come_and_matched(
    trained, tiny_synthetic, tmp_path
):
    """docs/studies/sharp_photos.py on larger photos of products the model never saw: the matched
    captions are those of the photos shrunk to the training resolution by hand."""
    import importlib.util

    from transformers import AutoModel, AutoProcessor

    spec = importlib.util.spec_from_file_location(
        "sharp_photos", REPO_ROOT / "docs/studies/sharp_photos.py"
    )
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    out, _, _ = trained
    photos = tmp_path / "photos"
    (photos / "images").mkdir(parents=True)
    rows = ["product_id,filename,caption"]
    for i in range(3):
        sharp = np.random.default_rng(i).integers(0, 255, (192, 160, 3), dtype=np.uint8)
        Image.fromarray(sharp).save(photos / "images" / f"s{i}.png")
        rows.append(f"sharp-{i},s{i}.png,red cotton shirt")
    (photos / "metadata.csv").write_text("\n".join(rows) + "\n")
    argv = ["--model", str(out), "--dataset", str(tiny_synthetic), "--photos", str(photos)]
    report = study.main([*argv, "--out", str(tmp_path / "sharp.json")])
    assert json.loads((tmp_path / "sharp.json").read_text()) == report
    assert report["num_photos"] == 3 and report["training_resolution"] == 64
    assert set(report["results"]) == {
        f"{kind}_{way}" for kind in ("model", "retrieval") for way in ("as_they_come", "matched")
    }
    assert all(0 <= r["bleu"] <= 100 for r in report["results"].values())
    model = AutoModel.from_pretrained(out, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    by_hand = [
        Image.open(photos / "images" / f"s{i}.png").resize(
            (53, 64), Image.Resampling.LANCZOS
        )  # (W, H)
        for i in range(3)
    ]
    pixels = processor.image_processor(by_hand, do_match_training_resolution=False)["pixel_values"]
    assert (
        processor.batch_decode(model.generate(pixel_values=pixels))
        == report["results"]["model_matched"]["examples"]
    )
    (photos / "metadata.csv").write_text(
        rows[0] + "\n" + rows[1].replace("sharp-0", "SYN0-0000000") + "\n"
    )
    with pytest.raises(UserError, match="--exclude"):  # a product the model was trained on
        study.main([*argv, "--out", str(tmp_path / "refused.json")])


def test_the_caption_processor_passes_the_resolution_option_on(tokenizer, images):
    image_processor = ProductImageProcessor(image_size=32, training_resolution=20)
    processor = ProductCaptionProcessor(image_processor, tokenizer)
    as_they_come = ProductImageProcessor(image_size=32)(images)["pixel_values"]
    matched = processor(images=images)["pixel_values"]  # the 40 px photos shrunk to 20 px first
    assert torch.equal(matched, image_processor(images)["pixel_values"])
    assert not torch.equal(matched, as_they_come)
    off = processor(images=images, do_match_training_resolution=False)["pixel_values"]
    assert torch.equal(off, as_they_come)
