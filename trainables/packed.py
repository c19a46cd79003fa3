"""Padding-free forward passes: the token-wise layers compute the batch's real tokens only.

A padded batch of B pairs and width L holds B x L positions; with random training batches about
a sixth of them are padding, and the padded model computes embeddings, projections and the
feed-forward block for them too, then throws the results away. Here those layers run on the
packed real tokens (T rows instead of B x L): most of an encoder's FLOPs. Only attention needs the
sequences apart. On the CPU each sequence is attended by its own SDPA call on its packed rows:
no padded scores (their share is the quadratic one: with random batches a third of the grid's
scores can be padding), no mask, and no scattering of queries, keys and values into a grid; the
per-call overhead is small next to a sequence's attention. PyTorch's jagged (nested) tensors give
the same result but ran several times slower on this CPU (benchmarks/padding_free.py measures the
three ways). On a GPU keys and values are scattered back into a (B, L) grid and attended with the
padding masked out, the padded model's masked product in one kernel per layer.

Every operation is the padded model's on fewer rows, so logits and gradients equal the padded
computation's to float rounding (tests/test_packed.py, with dropout off: dropout draws masks for
the computed positions only, so in training its random numbers differ, not its distribution).

Families: BERT-style classifiers (BERT, MiniLM; with `trainables.first_token`'s last layer too)
and ModernBERT (global and sliding-window layers, CLS or mean pooling). Remote-code families keep
their own forward: their code is not ours to restructure, and GTE's remote code has its own
`unpad_inputs` option. A batch without padding, or one padded on the left, takes the model's own
forward (there is nothing to gain, or the positions would differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPoolingAndCrossAttentions
from transformers.models.bert.modeling_bert import BertForSequenceClassification, BertModel
from transformers.models.modernbert.modeling_modernbert import (
    ModernBertForSequenceClassification,
    ModernBertModel,
    apply_rotary_pos_emb,
)

from trainables.first_token import FirstTokenBertLayer


@dataclass(frozen=True)
class Packing:
    """Where a right-padded batch's real tokens sit in its (B, L) grid."""

    index: torch.Tensor  # (T,) flat grid position of each real token, row by row
    first: torch.Tensor  # (B,) packed row of each sequence's first token
    key_mask: torch.Tensor  # (B, 1, 1, L) True where a key is a real token
    lengths: tuple[int, ...]  # each sequence's real tokens, on the host: the packed rows' split sizes
    batch: int
    length: int

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(T, F) packed rows -> (B, L, F) grid, zeros at the padding."""
        grid = x.new_zeros(self.batch * self.length, x.shape[-1])
        return grid.index_copy(0, self.index, x).view(self.batch, self.length, -1)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, F) grid -> (T, F) packed rows."""
        return x.reshape(self.batch * self.length, -1).index_select(0, self.index)

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """The real entries of a (B, L) tensor (ids, token types, positions), packed: (T,)."""
        return x.reshape(-1).index_select(0, self.index)


def packing_of(attention_mask: torch.Tensor | None) -> Packing | None:
    """The packing of a right-padded batch; None when it has no padding or is not right-padded.

    One host sync (a single `.tolist()`), wherever the mask lives: the lengths and whether the
    mask is right-padded come back together, and the token index is built from them on the mask's
    device (a boolean `nonzero` would sync again to learn its size)."""
    if attention_mask is None or attention_mask.dim() != 2:
        return None
    mask = attention_mask.bool()
    batch, length = mask.shape
    grid = torch.arange(length, device=mask.device)
    lengths = mask.sum(1)
    right_padded = (mask == (grid < lengths[:, None])).all()
    *sizes, right = torch.cat([lengths, right_padded[None].to(lengths.dtype)]).tolist()  # the one sync
    if not right or min(sizes) == 0 or min(sizes) == length:
        return None  # left padding or an empty row: positions would differ; no padding: nothing to skip
    total = sum(sizes)
    first = torch.cumsum(lengths, 0) - lengths
    # Token t of row b sits at grid position b * length + (t - first[b]).
    row_start = torch.arange(batch, device=mask.device) * length - first
    index = torch.arange(total, device=mask.device) + row_start.repeat_interleave(lengths, output_size=total)
    return Packing(index, first, mask[:, None, None, :], tuple(sizes), batch, length)


def _wants_more_than_logits(kwargs: dict) -> bool:
    return any(kwargs.get(k) for k in ("output_attentions", "output_hidden_states", "use_cache"))


def per_sequence_attention(device: torch.device) -> bool:
    """Whether attention runs per sequence (on the packed rows, no mask) rather than over the re-padded grid.

    On the CPU, per sequence: measured faster (benchmarks/padding_free.py, README "Performance"):
    it computes no padded scores and skips scattering q, k, v into the grid. On a GPU, the grid:
    one kernel per layer instead of one per sequence, and its padded scores cost little there."""
    return device.type == "cpu"


def _attend(
    packing: Packing,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    head_size: int,
    first_only: bool = False,
    window: int | None = None,
    per_sequence: bool | None = None,
    **sdpa,
) -> torch.Tensor:
    """Attention within each sequence: packed queries `q` (T, H), or with `first_only` each sequence's
    first token (B, H), over packed keys and values (T, H); the result has `q`'s rows. `window`: keys
    farther than that many positions from the query are masked (ModernBERT's sliding window).
    `per_sequence`: which way (default: `per_sequence_attention` of the device)."""
    if per_sequence_attention(q.device) if per_sequence is None else per_sequence:
        return _attend_per_sequence(packing, q, k, v, head_size=head_size, first_only=first_only, window=window, **sdpa)

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], -1, head_size).transpose(1, 2)

    mask = packing.key_mask
    if window is not None:
        grid = torch.arange(packing.length, device=q.device)
        mask = mask & ((grid[:, None] - grid[None, :]).abs() <= window)
    queries = q[:, None] if first_only else packing.pad(q)
    if first_only:
        mask = mask[..., :1, :]
    out = F.scaled_dot_product_attention(heads(queries), heads(packing.pad(k)), heads(packing.pad(v)), attn_mask=mask, **sdpa)
    out = out.transpose(1, 2).reshape(queries.shape[0], queries.shape[1], -1)
    return out[:, 0] if first_only else packing.unpad(out)


def _attend_per_sequence(
    packing: Packing,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    head_size: int,
    first_only: bool,
    window: int | None,
    **sdpa,
) -> torch.Tensor:
    """`_attend`, one SDPA call per sequence on its own packed rows: no padding and, unless a sequence
    is longer than the window, no mask (the CPU's flash kernel then skips the mask's reads)."""

    def heads(x: torch.Tensor) -> torch.Tensor:  # (l, H) -> (1, heads, l, head_size)
        return x.view(1, x.shape[0], -1, head_size).transpose(1, 2)

    queries = q.split(1) if first_only else q.split(packing.lengths)
    band = None
    if window is not None and max(packing.lengths) - 1 > window:
        grid = torch.arange(max(packing.lengths), device=q.device)
        band = (grid[:, None] - grid[None, :]).abs() <= window
    out = []
    for size, qi, ki, vi in zip(packing.lengths, queries, k.split(packing.lengths), v.split(packing.lengths)):
        mask = None if band is None or size - 1 <= window else band[: qi.shape[0], :size]
        o = F.scaled_dot_product_attention(heads(qi), heads(ki), heads(vi), attn_mask=mask, **sdpa)
        out.append(o.transpose(1, 2).reshape(qi.shape[0], -1))
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# BERT (MiniLM, ...)
# --------------------------------------------------------------------------------------------


class PackedBertModel(BertModel):
    """A BertModel (same parameters, same names) whose forward skips padding."""

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ):
        packing = packing_of(attention_mask)
        plain = input_ids is None or position_ids is not None or inputs_embeds is not None
        if packing is None or plain or _wants_more_than_logits(kwargs) or self.config.is_decoder:
            return super().forward(
                input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                **kwargs,
            )
        positions = torch.arange(packing.length, device=input_ids.device).expand(packing.batch, -1)
        hidden = self.embeddings(
            input_ids=packing.take(input_ids)[None],
            token_type_ids=None if token_type_ids is None else packing.take(token_type_ids)[None],
            position_ids=packing.take(positions)[None],
        )[0]
        for layer in self.encoder.layer:
            hidden = _bert_layer(layer, hidden, packing)
        if hidden.shape[0] == packing.batch and isinstance(self.encoder.layer[-1], FirstTokenBertLayer):
            sequence = hidden[:, None]  # the first token of each sequence: all the head reads
        else:
            sequence = packing.pad(hidden)
        pooled = self.pooler(sequence) if self.pooler is not None else None
        return BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=sequence, pooler_output=pooled)


def _bert_layer(layer: nn.Module, hidden: torch.Tensor, packing: Packing) -> torch.Tensor:
    """One BertLayer on packed rows (T, H); a FirstTokenBertLayer returns the first tokens only (B, H)."""
    attention = layer.attention.self
    first_only = isinstance(layer, FirstTokenBertLayer)
    queries = hidden.index_select(0, packing.first) if first_only else hidden
    context = _attend(
        packing,
        attention.query(queries),
        attention.key(hidden),
        attention.value(hidden),
        head_size=attention.attention_head_size,
        first_only=first_only,
        dropout_p=attention.dropout.p if attention.training else 0.0,
        scale=attention.scaling,
    )
    return layer.feed_forward_chunk(layer.attention.output(context, queries))


# --------------------------------------------------------------------------------------------
# ModernBERT
# --------------------------------------------------------------------------------------------


class PackedModernBertModel(ModernBertModel):
    """A ModernBertModel (same parameters, same names) whose forward skips padding."""

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ):
        packing = packing_of(attention_mask)
        plain = input_ids is None or position_ids is not None or inputs_embeds is not None
        if packing is None or plain or _wants_more_than_logits(kwargs):
            return super().forward(
                input_ids, attention_mask=attention_mask, position_ids=position_ids, inputs_embeds=inputs_embeds, **kwargs
            )
        hidden = self.embeddings(input_ids=packing.take(input_ids))  # (T, H)
        grid = torch.arange(packing.length, device=input_ids.device)
        positions = packing.take(grid.expand(packing.batch, -1))[None]
        rotary = {kind: self.rotary_emb(hidden[None], positions, kind) for kind in set(self.config.layer_types)}
        windows = {"full_attention": None, "sliding_attention": self.config.sliding_window}
        for layer in self.layers:
            cos, sin = rotary[layer.attention_type]  # (1, T, head_dim): each token at its own position
            window = windows[layer.attention_type]
            hidden = hidden + _modernbert_attention(layer.attn, layer.attn_norm(hidden), cos, sin, window, packing)
            hidden = hidden + layer.mlp(layer.mlp_norm(hidden))
        return BaseModelOutput(last_hidden_state=packing.pad(self.final_norm(hidden)))


def _modernbert_attention(
    attn: nn.Module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, window: int | None, packing: Packing
) -> torch.Tensor:
    """ModernBertAttention on packed rows (T, H), rotary embeddings at each token's own position."""
    qkv = attn.Wqkv(hidden).view(hidden.shape[0], 3, -1, attn.head_dim)
    q, k, v = qkv.unbind(dim=1)  # (T, heads, head_dim)
    q, k = apply_rotary_pos_emb(q[None].transpose(1, 2), k[None].transpose(1, 2), cos, sin, unsqueeze_dim=1)
    q, k = (x.transpose(1, 2)[0].reshape(hidden.shape[0], -1) for x in (q, k))
    context = _attend(
        packing,
        q,
        k,
        v.reshape(hidden.shape[0], -1),
        head_size=attn.head_dim,
        window=window,
        dropout_p=attn.attention_dropout if attn.training else 0.0,
        scale=attn.head_dim**-0.5,
    )
    return attn.out_drop(attn.Wo(context))


# --------------------------------------------------------------------------------------------
# Switch
# --------------------------------------------------------------------------------------------

_PACKED = {
    BertForSequenceClassification: ("bert", BertModel, PackedBertModel),
    ModernBertForSequenceClassification: ("model", ModernBertModel, PackedModernBertModel),
}


def set_padding_free(model: nn.Module, enabled: bool = True) -> bool:
    """Give `model`'s encoder the padding-free forward (or its own back); return whether the family
    has one. Weights and state-dict names are untouched, so saving and loading are unaffected."""
    family = _PACKED.get(type(model))
    if family is None:
        return False
    attribute, plain, packed = family
    encoder = getattr(model, attribute)
    if type(encoder) not in (plain, packed):
        return False
    encoder.__class__ = packed if enabled else plain
    return True
