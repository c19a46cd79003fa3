"""Padding-free forward passes: the token-wise layers compute the batch's real tokens only.

A padded batch of B pairs and width L holds B x L positions; with random training batches about
a sixth of them are padding, and the padded model computes embeddings, projections and the
feed-forward block for them too, then throws the results away. Here those layers run on the
packed real tokens (T rows instead of B x L): most of an encoder's FLOPs. Only attention needs the
sequences apart: keys and values are scattered back into a (B, L) grid and attended with the
padding masked out, the same masked product the padded model computes (attention is a few per
cent of the FLOPs at these lengths, so its padding costs little). PyTorch's jagged (nested)
tensors would avoid even that, but their SDPA on the CPU unbinds the batch into one small kernel
per sequence, and grouping sequences by length does the same; the re-padded attention is one call.

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
    """The packing of a right-padded batch; None when it has no padding or is not right-padded."""
    if attention_mask is None or attention_mask.dim() != 2:
        return None
    mask = attention_mask.bool()
    if bool(mask.all()) or not bool(mask[:, 0].all()) or bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        return None
    batch, length = mask.shape
    lengths = mask.sum(1)
    first = torch.cumsum(lengths, 0) - lengths
    index = mask.reshape(-1).nonzero().squeeze(1)
    return Packing(index, first, mask[:, None, None, :], batch, length)


def _wants_more_than_logits(kwargs: dict) -> bool:
    return any(kwargs.get(k) for k in ("output_attentions", "output_hidden_states", "use_cache"))


def _attend(
    packing: Packing, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, head_size: int, **sdpa
) -> torch.Tensor:
    """Attention of padded-grid queries `q` (B, Lq, H) over packed keys and values (T, H): (B, Lq, H)."""

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], -1, head_size).transpose(1, 2)

    mask = sdpa.pop("attn_mask", packing.key_mask)
    out = F.scaled_dot_product_attention(heads(q), heads(packing.pad(k)), heads(packing.pad(v)), attn_mask=mask, **sdpa)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)


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
    q = attention.query(queries)
    q = q[:, None] if first_only else packing.pad(q)
    context = _attend(
        packing,
        q,
        attention.key(hidden),
        attention.value(hidden),
        head_size=attention.attention_head_size,
        dropout_p=attention.dropout.p if attention.training else 0.0,
        scale=attention.scaling,
    )
    context = context[:, 0] if first_only else packing.unpad(context)
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
        masks = {"full_attention": packing.key_mask}
        if "sliding_attention" in rotary:
            distance = (grid[:, None] - grid[None, :]).abs()
            masks["sliding_attention"] = packing.key_mask & (distance <= self.config.sliding_window)
        for layer in self.layers:
            cos, sin = rotary[layer.attention_type]  # (1, T, head_dim): each token at its own position
            mask = masks[layer.attention_type]
            hidden = hidden + _modernbert_attention(layer.attn, layer.attn_norm(hidden), cos, sin, mask, packing)
            hidden = hidden + layer.mlp(layer.mlp_norm(hidden))
        return BaseModelOutput(last_hidden_state=packing.pad(self.final_norm(hidden)))


def _modernbert_attention(
    attn: nn.Module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor, packing: Packing
) -> torch.Tensor:
    """ModernBertAttention on packed rows (T, H), rotary embeddings at each token's own position."""
    qkv = attn.Wqkv(hidden).view(hidden.shape[0], 3, -1, attn.head_dim)
    q, k, v = qkv.unbind(dim=1)  # (T, heads, head_dim)
    q, k = apply_rotary_pos_emb(q[None].transpose(1, 2), k[None].transpose(1, 2), cos, sin, unsqueeze_dim=1)
    q, k = (x.transpose(1, 2)[0].reshape(hidden.shape[0], -1) for x in (q, k))
    context = _attend(
        packing,
        packing.pad(q),
        k,
        v.reshape(hidden.shape[0], -1),
        head_size=attn.head_dim,
        attn_mask=mask,
        dropout_p=attn.attention_dropout if attn.training else 0.0,
        scale=attn.head_dim**-0.5,
    )
    return attn.out_drop(attn.Wo(packing.unpad(context)))


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
