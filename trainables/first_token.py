"""A classifier that reads only the first token: let the last layer compute only that token.

A BERT sequence classifier pools the first token ([CLS]) of the last layer; the last layer's
outputs at every other position are computed and thrown away: 1/L of the encoder's work for L
layers (1/6 for MiniLM-L6, 1/12 for MiniLM-L12). `compute_first_token_only` gives the last BERT
layer a forward whose query, attention output and feed-forward run for the first token only; every
token still contributes its key and value. The same operations on fewer rows, so the logits equal
the full layer's to float rounding, in training and in evaluation. (In training, dropout then draws
masks for the computed positions only: the same distribution, other random numbers.)

The last layer's hidden states hold one position, so `output_hidden_states` would show that; the
project only reads logits.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.bert.modeling_bert import BertForSequenceClassification, BertLayer, eager_attention_forward


class FirstTokenBertLayer(BertLayer):
    """A BertLayer (same parameters, same names) that returns only the first position."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: object | None = None,
        **kwargs,
    ) -> torch.Tensor:
        attention = self.attention.self
        batch, length, _ = hidden_states.shape
        first = hidden_states[:, :1]

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, x.shape[1], -1, attention.attention_head_size).transpose(1, 2)

        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, :1]  # the first query's row (flash attention takes 2-D)
        implementation = attention.config._attn_implementation
        interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        context, _ = interface(
            attention,
            heads(attention.query(first)),
            heads(attention.key(hidden_states)),
            heads(attention.value(hidden_states)),
            attention_mask,
            dropout=attention.dropout.p if attention.training else 0.0,
            scaling=attention.scaling,
            **kwargs,
        )
        attended = self.attention.output(context.reshape(batch, 1, -1), first)
        return self.feed_forward_chunk(attended)


def compute_first_token_only(model: nn.Module) -> bool:
    """Switch `model`'s last layer to `FirstTokenBertLayer` when the model is a BERT sequence
    classifier (its pooler reads the first token); return whether it did. Weights are untouched."""
    if type(model) is not BertForSequenceClassification or model.bert.pooler is None:
        return False
    last = model.bert.encoder.layer[-1]
    if type(last) is not BertLayer or last.is_decoder:
        return False
    last.__class__ = FirstTokenBertLayer
    return True
