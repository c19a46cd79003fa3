"""Models that run code from the Hugging Face hub (`trust_remote_code`) run pinned code only.

gte-multilingual-base is such a model: its config names classes in another repository
(`Alibaba-NLP/new-impl--modeling.NewForSequenceClassification`), and unpinned, every load runs that
repository's `main` as it is that day. So a remote-code model loads only at the revisions given in
STUDY_MODEL_REVISIONS (`REPO=COMMIT,REPO=COMMIT`; the model's repository and, for GTE, the code's):

    STUDY_MODEL_REVISIONS="Alibaba-NLP/gte-multilingual-base=<commit>,Alibaba-NLP/new-impl=<commit>"

No commit hashes are recorded in this file: the work that wrote it had no network to look them up,
and an unverified hash would be worse than none. Take them from each repository's "History" page
(or `huggingface_hub.HfApi().model_info(repo).sha`) when you download the model. `=main` accepts the
moving code knowingly. Which attention implementation GTE's code then runs (SDPA where it accepts
`attn_implementation="sdpa"`, else eager) is printed by benchmarks/first_gpu_check.py ("attention").
"""

from __future__ import annotations

import os

REVISIONS_ENV = "STUDY_MODEL_REVISIONS"
# model repository -> the repository its remote code lives in (when it is another one)
CODE_REPOSITORIES = {"Alibaba-NLP/gte-multilingual-base": "Alibaba-NLP/new-impl"}


def pinned_revisions() -> dict[str, str]:
    """REPO -> revision, from STUDY_MODEL_REVISIONS."""
    pins = {}
    for item in filter(None, (part.strip() for part in os.environ.get(REVISIONS_ENV, "").split(","))):
        repo, sep, revision = item.rpartition("=")
        if not sep or not repo or not revision:
            raise ValueError(f"{REVISIONS_ENV} expects REPO=COMMIT items separated by commas, but got {item!r}")
        pins[repo] = revision
    return pins


def load_kwargs(checkpoint: str, trust_remote_code: bool) -> dict[str, str]:
    """`revision` / `code_revision` for from_pretrained; {} for models without remote code or local
    directories. Raises ValueError for a hub model with remote code that is not pinned."""
    if not trust_remote_code or os.path.isdir(checkpoint):
        return {}
    pins = pinned_revisions()
    code_repository = CODE_REPOSITORIES.get(checkpoint, checkpoint)
    missing = [repo for repo in dict.fromkeys((checkpoint, code_repository)) if repo not in pins]
    if missing:
        wanted = ",".join(f"{repo}=<commit>" for repo in dict.fromkeys((checkpoint, code_repository)))
        raise ValueError(
            f"model {checkpoint!r} runs code from the Hugging Face hub (trust_remote_code), which this project "
            f"runs only pinned; {', '.join(missing)} has no revision. Set {REVISIONS_ENV}=\"{wanted}\" with the "
            "commits you checked (each repository's History page), or =main to accept the moving code knowingly."
        )
    kwargs = {"revision": pins[checkpoint]}
    if code_repository != checkpoint:
        kwargs["code_revision"] = pins[code_repository]
    return kwargs


def load_model_code_once(source: str, trust_remote_code: bool) -> None:
    """Fetch and import a remote-code model's classification class now, in this one process, so
    that trials starting together do not race to write the same module into HF_MODULES_CACHE."""
    if not trust_remote_code:
        return
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    pins = load_kwargs(source, trust_remote_code)
    config = AutoConfig.from_pretrained(source, trust_remote_code=True, **pins)
    reference = (getattr(config, "auto_map", None) or {}).get("AutoModelForSequenceClassification")
    if reference:
        get_class_from_dynamic_module(
            reference, source, revision=pins.get("revision"), code_revision=pins.get("code_revision")
        )
