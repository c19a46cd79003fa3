"""A small remote-code model (GTE's loading path): written as module files, saved with auto_map.

Alibaba-NLP/gte-multilingual-base is `trust_remote_code`: BERT-style layers with rotary position
embeddings whose `inv_freq`, `cos_cached` and `sin_cached` are non-persistent buffers. This toy
has the same structure, so a test can load it through the real
`AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)` path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

CONFIG_SOURCE = '''
from transformers import PretrainedConfig


class ToyRopeConfig(PretrainedConfig):
    model_type = "toy-rope"

    def __init__(self, vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=512, type_vocab_size=2, rope_theta=10000.0,
                 layer_norm_eps=1e-12, hidden_dropout_prob=0.1, pad_token_id=0, **kwargs):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.rope_theta = rope_theta
        self.layer_norm_eps = layer_norm_eps
        self.hidden_dropout_prob = hidden_dropout_prob
'''

MODELING_SOURCE = '''
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_toy_rope import ToyRopeConfig


class RotaryEmbedding(nn.Module):
    """As in GTE: the frequencies and the cos/sin tables are non-persistent buffers."""

    def __init__(self, dim, max_position_embeddings, base):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        t = torch.arange(max_position_embeddings, dtype=torch.float32)
        emb = torch.cat([torch.outer(t, inv_freq)] * 2, dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)

    def forward(self, seq_len):
        return self.cos_cached[:seq_len], self.sin_cached[:seq_len]


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Layer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.up_gate = nn.Linear(config.hidden_size, 2 * config.intermediate_size)  # GLU, as in GTE
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, cos, sin, mask):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        attn = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = self.norm1(x + self.dropout(self.out(attn.transpose(1, 2).reshape(b, n, d))))
        up, gate = self.up_gate(x).chunk(2, dim=-1)
        return self.norm2(x + self.dropout(self.down(up * nn.functional.gelu(gate))))


class ToyRopeForSequenceClassification(PreTrainedModel):
    config_class = ToyRopeConfig
    base_model_prefix = "toy"

    def __init__(self, config):
        super().__init__(config)
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.emb_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.rotary = RotaryEmbedding(
            config.hidden_size // config.num_attention_heads, config.max_position_embeddings, config.rope_theta
        )
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.emb_norm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids))
        cos, sin = self.rotary(input_ids.shape[1])
        mask = None if attention_mask is None else attention_mask[:, None, None, :].bool()
        for layer in self.layers:
            x = layer(x, cos.to(x.dtype), sin.to(x.dtype), mask)
        return SequenceClassifierOutput(logits=self.classifier(x[:, 0]))
'''


def _import_from(directory: Path, package: str):
    spec = importlib.util.spec_from_file_location(
        package, directory / "__init__.py", submodule_search_locations=[str(directory)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.modeling_toy_rope")


def save_toy_remote_model(directory: Path, *, seed: int = 0, **config_kwargs) -> Path:
    """Write the toy's module files, build it from a config and `save_pretrained` it (with auto_map and
    the module files beside the weights) plus a BERT tokenizer into `directory`; return `directory`."""
    import torch
    from transformers import AutoTokenizer

    from trainables.models import stand_in_tokenizer_path

    source = directory.parent / f"{directory.name}-source" / "toy_rope_src"
    source.mkdir(parents=True, exist_ok=True)
    (source / "__init__.py").write_text("")
    (source / "configuration_toy_rope.py").write_text(CONFIG_SOURCE)
    (source / "modeling_toy_rope.py").write_text(MODELING_SOURCE)
    modeling = _import_from(source, f"toy_rope_src_{abs(hash(str(directory)))}")
    config_class = modeling.ToyRopeConfig
    model_class = modeling.ToyRopeForSequenceClassification
    config_class.register_for_auto_class()
    model_class.register_for_auto_class("AutoModelForSequenceClassification")
    torch.manual_seed(seed)
    model = model_class(config_class(num_labels=1, **config_kwargs))
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(stand_in_tokenizer_path()).save_pretrained(directory)
    return directory
