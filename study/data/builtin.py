"""A small, deterministic, offline passage-ranking collection (MS MARCO / TREC DL in miniature).

Why: the study needs training pairs and evaluation sets that build in seconds without
network access, yet behave like real passage reranking: BM25 finds the relevant passages
but ranks lexical look-alikes above some of them, and a cross-encoder can learn a
consistent rule that fixes this.

How the collection is built:

* Each *topic* is a two-word subject (``"coastal wetland"``) from one of four domains, with a
  few *attributes* (``"salinity"``) drawn from two of the domain's attribute families
  (``salinity`` is related to ``acidity``, ``nitrogen``, ``phosphorus``).
* A *query* asks about one attribute of one subject
  (``"what is the effect of salinity on coastal wetland"``).
* Passages are short factual paragraphs made from sentence templates and a real English
  word list.  Relevance follows one rule, the same for train and eval queries:

  - grade 3: the passage discusses the subject *and* the attribute together;
  - grade 2: the subject together with a related attribute (same family);
  - grade 1: the subject with an unrelated attribute, or the subject mentioned in passing;
  - grade 0: everything else, including *lexical distractors*: passages about another
    subject that shares a word with the query subject, repeating the query attribute and
    query wording, with the other subject word elsewhere ("a volcanic wetland and a coastal
    river").  BM25 sees all query words; only word order/context tells them apart.

* Train and eval queries are disjoint (subject, attribute) pairs; topics and the corpus are
  shared between them, as in MS MARCO where train and dev queries search one corpus.
* Candidates are the BM25 (k1=0.82, b=0.68) top-k over the whole corpus; eval queries are
  kept only if a grade>=2 passage is among them.  BM25 nDCG@10 on builtin-dl is ~0.4.

Sizes: "smoke" (~0.1 s, ~480 pairs, 30-50-word passages) and "demo" (~0.6 s, ~2950 pairs,
60-80-word passages, 100 candidates per query).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import numpy as np

from study.data.types import EvalSet, TrainingPair

__all__ = ["SIZES", "BuiltinDataset", "BuiltinSize", "build_builtin_dataset"]


# --------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltinSize:
    """How big the generated collection is."""

    n_topics: int  # distinct subjects with their own passages
    n_train_queries: int
    n_dl_queries: int
    n_dev_queries: int
    n_validation_queries: int
    candidates_per_query: int  # BM25 depth of the eval candidates
    words_per_passage: tuple[int, int]  # inclusive target range of words per passage
    core_passages_per_attribute: tuple[int, int] = (1, 3)  # grade-3 passages per (subject, attribute)
    distractors_per_query: tuple[int, int] = (2, 4)  # lexical look-alikes per query
    mentions_per_topic: tuple[int, int] = (1, 2)  # passages that mention the subject in passing
    noise_passages: int = 100  # off-topic filler passages
    max_positives_per_query: int = 4  # training positives taken per train query
    hard_negative_fraction: float = 0.75  # share of negatives drawn from the BM25 top
    hard_negative_depth: int = 30  # BM25 depth that hard negatives come from


SIZES: dict[str, BuiltinSize] = {
    "smoke": BuiltinSize(
        n_topics=40,
        n_train_queries=70,
        n_dl_queries=20,
        n_dev_queries=30,
        n_validation_queries=20,
        candidates_per_query=30,
        words_per_passage=(30, 50),
        noise_passages=100,
    ),
    "demo": BuiltinSize(
        n_topics=180,
        n_train_queries=400,
        n_dl_queries=40,
        n_dev_queries=60,
        n_validation_queries=40,
        candidates_per_query=100,
        words_per_passage=(60, 80),
        noise_passages=400,
    ),
}


@dataclass(frozen=True)
class BuiltinDataset:
    """Training pairs plus the three eval sets ("builtin-dl", "builtin-dev", "builtin-validation")."""

    train_pairs: list[TrainingPair]
    eval_sets: dict[str, EvalSet]


# --------------------------------------------------------------------------------------
# Vocabulary (compact strings keep the module readable)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Domain:
    name: str
    modifiers: tuple[str, ...]  # first word of a subject
    heads: tuple[str, ...]  # second word of a subject
    families: tuple[tuple[str, ...], ...]  # related attributes share a family


def _domain(name: str, modifiers: str, heads: str, families: str) -> _Domain:
    return _Domain(
        name,
        tuple(modifiers.split()),
        tuple(heads.split()),
        tuple(tuple(f.split()) for f in families.split("|")),
    )


_DOMAINS: tuple[_Domain, ...] = (
    _domain(
        "environment",
        "coastal alpine tropical arid boreal urban volcanic temperate lowland riverine highland subarctic",
        "wetland forest grassland lake river reef glacier estuary meadow desert valley island",
        "rainfall temperature humidity drought | salinity acidity nitrogen phosphorus"
        " | biodiversity vegetation wildlife pollination | tourism pollution logging grazing",
    ),
    _domain(
        "health",
        "chronic acute pediatric viral bacterial recurrent mild severe adult elderly allergic postoperative",
        "bronchitis anemia arthritis dermatitis insomnia migraine hepatitis gastritis sinusitis"
        " tendinitis pneumonia eczema",
        "sugar protein caffeine alcohol | exercise sleep stress posture"
        " | antibiotics surgery vaccination physiotherapy | diagnosis symptoms prognosis prevalence",
    ),
    _domain(
        "technology",
        "lithium solar wireless hydraulic electric digital optical thermal pneumatic acoustic magnetic portable",
        "battery turbine sensor pump motor router printer camera valve compressor amplifier scanner",
        "voltage current resistance frequency | cost maintenance lifespan reliability"
        " | efficiency noise heat vibration | software calibration firmware security",
    ),
    _domain(
        "agriculture",
        "organic irrigated dairy hillside terraced commercial smallholder greenhouse upland floodplain"
        " perennial heirloom",
        "wheat cattle orchard vineyard rice maize barley poultry tomato cotton potato coffee",
        "compost erosion fertility tillage | weeds aphids fungus locusts"
        " | irrigation runoff groundwater flooding | yield price export subsidy",
    ),
)

# Content words of the query templates; kept out of the general vocabulary so that only
# the templates (and the distractors that echo them) control where they appear.
_QUERY_KEYWORDS = frozenset("effect affect role important measured".split())

_RESERVED = (
    frozenset(w for d in _DOMAINS for w in d.modifiers + d.heads)
    | frozenset(a for d in _DOMAINS for f in d.families for a in f)
    | _QUERY_KEYWORDS
)


def _general_words(text: str) -> tuple[str, ...]:
    """Domain-neutral filler words, minus any subject/attribute/query word (keeps relevance controlled)."""
    return tuple(w for w in dict.fromkeys(text.split()) if w not in _RESERVED)


_NOUNS = _general_words(
    "region study survey record pattern level period report sample process method factor result"
    " analysis practice policy program community system model structure source trend series area"
    " feature condition response balance cycle range scale stage standard strategy outcome review"
    " project agency guideline committee council framework benchmark estimate forecast variation"
    " difference decline distribution comparison observation experiment measurement assessment"
    " evaluation history origin context detail example question issue topic theme principle concept"
    " approach technique procedure routine schedule budget resource capacity demand supply quality"
    " quantity threshold limit boundary surface layer component element material texture shape"
    " movement direction position location distance depth height width weight volume density speed"
    " rate ratio percentage population household family neighborhood district province nation"
    " economy industry market company business worker teacher student researcher scientist engineer"
    " doctor official visitor resident audience reader author editor journal article chapter lecture"
    " conference workshop seminar meeting debate discussion interview campaign initiative"
)
_ADJECTIVES = _general_words(
    "significant gradual local regional moderate common rare recent major minor stable variable"
    " typical unusual notable broad narrow strong weak rapid slow steady sharp modest large small"
    " early late annual daily weekly historic modern ancient traditional practical theoretical"
    " detailed simple complex careful reliable accurate useful clear consistent uneven limited"
    " extensive frequent occasional general specific national global public private formal"
)
_VERBS = _general_words(  # base forms, used after "can", "to", "may"
    "influence reduce increase shape determine limit support improve explain describe predict"
    " monitor protect restore extend alter control balance stabilize weaken strengthen accelerate"
    " delay enhance disturb sustain regulate reflect indicate reveal highlight document compare"
    " evaluate estimate"
)
_TIMES = tuple("year season decade month period century winter summer".split())

# Query templates: (template, content keyword that distractors echo).
_QUERY_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("what is the effect of {a} on {s}", "effect"),
    ("how does {a} affect {s}", "affect"),
    ("{s} {a}", ""),
    ("role of {a} in {s}", "role"),
    ("why is {a} important for {s}", "important"),
    ("how is {a} measured in {s}", "measured"),
)
# One sentence per keyword, repeating the query's wording without the query's subject.
_ECHO_SENTENCES: dict[str, str] = {
    "effect": "The effect of {a} was the main topic of the {n}.",
    "affect": "Few people know how strongly {a} can affect a {j} {n}.",
    "role": "The role of {a} is discussed at length in the {n}.",
    "important": "{a} is important for almost every {j} {n}.",
    "measured": "{a} is measured in the same way in every {n}.",
    "": "{a} is mentioned again in the final {n}.",
}

# Subject and attribute in one sentence (what makes a passage grade 3 for that pair).
_CORE_SENTENCES = (
    "{a} is one of the main factors that can {v} {s} over a {j} {t}.",
    "Studies of {s} show that {a} can {v} the {n} and the {n2} of the {n3}.",
    "Changes in {a} have a {j} effect on {s}, especially during a {j2} {t}.",
    "Researchers often measure {a} in {s} to {v} the {j} {n}.",
    "For {s}, {a} is usually linked to the {n} of the {j} {n2}.",
    "Managing {a} is essential to {v} the {n} of {s}.",
    "The role of {a} in {s} has been described in several {j} reports.",
    "In {s}, a {j} level of {a} may {v} the {n} within a single {t}.",
)
# Subject without attribute.
_SUBJECT_SENTENCES = (
    "{s} is found in many places and has a {j} {n}.",
    "Most descriptions of {s} focus on its {n} and its {j} {n2}.",
    "{s} has been the subject of a {j} {n} for more than a {t}.",
    "Local experts describe {s} as a {j} example of a {n}.",
)
# Subject mentioned in passing inside a passage about something else.
_MENTION_SENTENCES = (
    "A similar {n} has also been noted for {s}, although it was not studied in detail.",
    "The same {n} was briefly compared with {s} in an earlier report.",
    "Readers interested in {s} will find a separate {n} on that subject.",
)
# Both words of the query subject, but never next to each other.
_SPLIT_SENTENCES = (
    "The same {n} was also reported for a {p1} and for a {p2}.",
    "Unlike a {p1}, a {p2} shows a {j} {n}.",
    "The {n} compared a {p1} with a {p2} over one {t}.",
)
_FILLER_SENTENCES = (
    "Many {n} reports describe a {j} {n2} that can {v} the local {n3}.",
    "In recent years, a {j} {n} has become more common in this {n2}.",
    "Scientists continue to {v} the {n} using {j} methods.",
    "The {n} is often compared with a {j} {n2} in published work.",
    "Data from a {j} {n} suggest a {j2} {n2} over the last {t}.",
    "Public interest in the {n} has grown over the past {t}.",
    "A {j} {n} can also {v} the {n2} under some conditions.",
    "Most experts agree that the {n} remains {j}.",
    "Each {t}, a {j} {n} is prepared for the {n2}.",
    "The {n} and the {n2} are closely connected.",
)


# --------------------------------------------------------------------------------------
# Internal records
# --------------------------------------------------------------------------------------

_Subject = tuple[str, str]  # (modifier, head)


@dataclass(frozen=True)
class _Topic:
    domain: _Domain
    subject: _Subject
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class _Passage:
    text: str
    subject: _Subject  # main subject
    attribute: str  # main attribute ("" for noise)
    mentions: frozenset[_Subject]  # subjects mentioned in passing


@dataclass(frozen=True)
class _Query:
    text: str
    subject: _Subject
    attribute: str
    keyword: str


def _phrase(subject: _Subject) -> str:
    return f"{subject[0]} {subject[1]}"


# --------------------------------------------------------------------------------------
# Text generation
# --------------------------------------------------------------------------------------

_A_AN = re.compile(r"\b([Aa]) (?=[aeio]|u(?!se))")  # "an arid", "an urban", but "a useful"


def _fill(rng: random.Random, template: str, **slots: str) -> str:
    """Fill a sentence template with the given slots plus random general words."""
    words = {
        "n": rng.choice(_NOUNS),
        "n2": rng.choice(_NOUNS),
        "n3": rng.choice(_NOUNS),
        "j": rng.choice(_ADJECTIVES),
        "j2": rng.choice(_ADJECTIVES),
        "v": rng.choice(_VERBS),
        "t": rng.choice(_TIMES),
    }
    words.update(slots)
    text = _A_AN.sub(r"\1n ", template.format(**words))
    return text[0].upper() + text[1:]


def _n_words(sentence: str) -> int:
    return len(sentence.split())


def _compose(rng: random.Random, key: list[str], words: tuple[int, int]) -> str:
    """Key sentences (in priority order, first always kept) padded with filler to the length range."""
    lo, hi = words
    sentences = key[:1]
    for sentence in key[1:]:  # drop lower-priority key sentences that would overflow
        if sum(map(_n_words, sentences)) + _n_words(sentence) <= hi:
            sentences.append(sentence)
    rng.shuffle(sentences)
    target = rng.randint(lo, hi)
    total = sum(map(_n_words, sentences))
    tries = 0
    while total < target and tries < 20:
        filler = _fill(rng, rng.choice(_FILLER_SENTENCES))
        tries += 1
        if total + _n_words(filler) > hi:
            continue
        sentences.insert(rng.randint(0, len(sentences)), filler)
        total += _n_words(filler)
    return " ".join(sentences)


def _core_sentences(rng: random.Random, subject: _Subject, attribute: str, n: int) -> list[str]:
    templates = rng.sample(_CORE_SENTENCES, n)
    return [_fill(rng, t, s=_phrase(subject), a=attribute) for t in templates]


def _topic_passage(rng: random.Random, subject: _Subject, attribute: str, words: tuple[int, int]) -> str:
    """Grade-3 text for (subject, attribute): they co-occur in 1-3 sentences, plus a subject sentence."""
    key = _core_sentences(rng, subject, attribute, rng.randint(1, 3))
    key.insert(1, _fill(rng, rng.choice(_SUBJECT_SENTENCES), s=_phrase(subject)))
    return _compose(rng, key, words)


def _other_subject(rng: random.Random, domain: _Domain, avoid: set[_Subject]) -> _Subject:
    while True:
        subject = (rng.choice(domain.modifiers), rng.choice(domain.heads))
        if subject not in avoid:
            return subject


# --------------------------------------------------------------------------------------
# Collection
# --------------------------------------------------------------------------------------


def _make_topics(rng: random.Random, n_topics: int) -> list[_Topic]:
    """Distinct subjects, spread round-robin over domains, each with attributes from two families."""
    used: set[_Subject] = set()
    topics = []
    for i in range(n_topics):
        domain = _DOMAINS[i % len(_DOMAINS)]
        subject = _other_subject(rng, domain, used)
        used.add(subject)
        attributes: list[str] = []
        for family in rng.sample(domain.families, 2):
            # Sometimes a single attribute from a family -> queries with few relevant passages.
            attributes += rng.sample(family, rng.choice((1, 2, 2, 3)))
        topics.append(_Topic(domain, subject, tuple(attributes)))
    return topics


def _make_query(rng: random.Random, subject: _Subject, attribute: str) -> _Query:
    template, keyword = rng.choice(_QUERY_TEMPLATES)
    return _Query(template.format(s=_phrase(subject), a=attribute), subject, attribute, keyword)


def _distractor(
    rng: random.Random, domain: _Domain, query: _Query, topic_subjects: set[_Subject], words: tuple[int, int]
) -> _Passage:
    """Grade 0 for `query` but lexically close: another subject sharing one word, the query's
    attribute and wording, and the other subject word in an unrelated phrase."""
    modifier, head = query.subject
    # The two split phrases carry one query-subject word each; they avoid topic subjects so
    # that a distractor never mentions some query's subject by accident.
    with_modifier = [(modifier, h) for h in domain.heads if h != head]
    with_head = [(m, head) for m in domain.modifiers if m != modifier]
    with_modifier = [p for p in with_modifier if p not in topic_subjects] or with_modifier
    with_head = [p for p in with_head if p not in topic_subjects] or with_head
    shared_modifier = rng.random() < 0.5
    if shared_modifier:
        main = (modifier, rng.choice([h for h in domain.heads if h != head]))
        with_modifier = [p for p in with_modifier if p != main] or with_modifier
    else:
        main = (rng.choice([m for m in domain.modifiers if m != modifier]), head)
        with_head = [p for p in with_head if p != main] or with_head
    p1, p2 = rng.choice(with_head), rng.choice(with_modifier)
    if rng.random() < 0.5:
        p1, p2 = p2, p1
    key = _core_sentences(rng, main, query.attribute, rng.randint(2, 3))
    key.insert(1, _fill(rng, _ECHO_SENTENCES[query.keyword], a=query.attribute))
    key.insert(1, _fill(rng, rng.choice(_SPLIT_SENTENCES), p1=_phrase(p1), p2=_phrase(p2)))
    return _Passage(_compose(rng, key, words), main, query.attribute, frozenset({p1, p2}))


def _mention_passage(rng: random.Random, topic: _Topic, words: tuple[int, int]) -> _Passage:
    """A passage about another subject of the same domain that names `topic.subject` once."""
    domain = topic.domain
    main = _other_subject(rng, domain, {topic.subject})
    attribute = rng.choice(rng.choice(domain.families))
    key = _core_sentences(rng, main, attribute, rng.randint(1, 2))
    key.insert(1, _fill(rng, rng.choice(_MENTION_SENTENCES), s=_phrase(topic.subject)))
    return _Passage(_compose(rng, key, words), main, attribute, frozenset({topic.subject}))


def _noise_passage(rng: random.Random, words: tuple[int, int]) -> _Passage:
    domain = rng.choice(_DOMAINS)
    subject = _other_subject(rng, domain, set())
    key = [_fill(rng, rng.choice(_SUBJECT_SENTENCES), s=_phrase(subject))]
    return _Passage(_compose(rng, key, words), subject, "", frozenset())


def _family_of(attribute: str) -> tuple[str, ...]:
    for domain in _DOMAINS:
        for family in domain.families:
            if attribute in family:
                return family
    raise KeyError(attribute)


def _grade(query: _Query, passage: _Passage) -> int:
    """The relevance rule (identical for train and eval queries)."""
    if passage.subject == query.subject:
        if passage.attribute == query.attribute:
            return 3
        if passage.attribute in _family_of(query.attribute):
            return 2
        return 1
    return 1 if query.subject in passage.mentions else 0


class _Bm25:
    """BM25 over the corpus with a full, deterministic ranking per query (ties by corpus order)."""

    def __init__(self, texts: Sequence[str]) -> None:
        tokens = bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)
        self._retriever = bm25s.BM25(k1=0.82, b=0.68)
        self._retriever.index(tokens, show_progress=False)
        self._n = len(texts)

    def rank(self, query: str) -> np.ndarray:
        tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        tokens = [t for t in tokens if t in self._retriever.vocab_dict]
        if not tokens:
            return np.arange(self._n)
        scores = np.asarray(self._retriever.get_scores(tokens), dtype=np.float64)
        return np.lexsort((np.arange(self._n), -scores))  # primary key: score desc


# --------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------

_EVAL_SPLITS: dict[str, str] = {  # name -> description
    "builtin-dl": "TREC DL 2019-like: graded qrels 0-3, relevant = grade >= 2",
    "builtin-dev": "MS MARCO dev-like: binary qrels (1 = grade >= 2 passage)",
    "builtin-validation": "like builtin-dev with disjoint queries; for hyperparameter selection",
}


def build_builtin_dataset(size: str = "smoke", *, seed: int = 0) -> BuiltinDataset:
    """Generate the built-in collection; the same (size, seed) gives identical output."""
    if size not in SIZES:
        raise ValueError(f"unknown builtin dataset size {size!r}; known sizes: {', '.join(sorted(SIZES))}")
    cfg = SIZES[size]
    rng = random.Random(seed)

    topics = _make_topics(rng, cfg.n_topics)
    queries = _make_query_pool(rng, topics, cfg)
    passages = _make_corpus(rng, topics, queries, cfg)
    grader = _Grader(passages)
    bm25 = _Bm25([p.text for p in passages])
    rankings = [bm25.rank(q.text) for q in queries]

    # Eval queries need a grade>=2 passage among their candidates; the rest go to training.
    n_eval = cfg.n_dl_queries + cfg.n_dev_queries + cfg.n_validation_queries
    eval_idx: list[int] = []
    train_idx: list[int] = []
    for qi, query in enumerate(queries):
        top = set(rankings[qi][: cfg.candidates_per_query].tolist())
        ok = any(g >= 2 and i in top for i, g in grader.grades(query).items())
        (eval_idx if ok and len(eval_idx) < n_eval else train_idx).append(qi)
    if len(eval_idx) < n_eval or len(train_idx) < cfg.n_train_queries:
        raise RuntimeError(f"builtin size {size!r}, seed {seed}: too few usable queries; raise n_topics")

    bounds = [0, cfg.n_dl_queries, cfg.n_dl_queries + cfg.n_dev_queries, n_eval]
    docids = [f"p{i:06d}" for i in range(len(passages))]
    eval_sets = {}
    for k, (name, description) in enumerate(_EVAL_SPLITS.items()):
        members = [(f"q{qi:05d}", queries[qi], rankings[qi]) for qi in eval_idx[bounds[k] : bounds[k + 1]]]
        eval_sets[name] = _eval_set(name, description, members, passages, docids, grader, cfg)

    train_idx = train_idx[: cfg.n_train_queries]
    train_pairs = _training_pairs(
        rng, cfg, [queries[qi] for qi in train_idx], [rankings[qi] for qi in train_idx], passages, grader
    )
    return BuiltinDataset(train_pairs=train_pairs, eval_sets=eval_sets)


def _make_query_pool(rng: random.Random, topics: list[_Topic], cfg: BuiltinSize) -> list[_Query]:
    """Distinct (subject, attribute) queries in random order, with slack for eval filtering."""
    pairs = [(t.subject, a) for t in topics for a in t.attributes]
    rng.shuffle(pairs)
    n_eval = cfg.n_dl_queries + cfg.n_dev_queries + cfg.n_validation_queries
    if len(pairs) < cfg.n_train_queries + n_eval:
        raise RuntimeError(f"{len(pairs)} (subject, attribute) pairs cannot cover the queries; raise n_topics")
    wanted = cfg.n_train_queries + math.ceil(1.3 * n_eval)
    return [_make_query(rng, s, a) for s, a in pairs[:wanted]]


def _make_corpus(
    rng: random.Random, topics: list[_Topic], queries: list[_Query], cfg: BuiltinSize
) -> list[_Passage]:
    """Topic passages (grades 3/2/1 for their subject), mentions, per-query distractors, and noise."""
    words = cfg.words_per_passage
    passages: list[_Passage] = []
    for topic in topics:
        for attribute in topic.attributes:
            for _ in range(rng.randint(*cfg.core_passages_per_attribute)):
                text = _topic_passage(rng, topic.subject, attribute, words)
                passages.append(_Passage(text, topic.subject, attribute, frozenset()))
        for _ in range(rng.randint(*cfg.mentions_per_topic)):
            passages.append(_mention_passage(rng, topic, words))
    domain_of = {t.subject: t.domain for t in topics}
    topic_subjects = set(domain_of)
    for query in queries:
        for _ in range(rng.randint(*cfg.distractors_per_query)):
            passages.append(_distractor(rng, domain_of[query.subject], query, topic_subjects, words))
    passages += [_noise_passage(rng, words) for _ in range(cfg.noise_passages)]
    rng.shuffle(passages)  # corpus position (-> docid) must not reveal how a passage was made
    return passages


class _Grader:
    """Non-zero grades of a query; only passages naming its subject can be > 0, so index by subject."""

    def __init__(self, passages: list[_Passage]) -> None:
        self._passages = passages
        self._by_subject: dict[_Subject, list[int]] = {}
        for i, p in enumerate(passages):
            for subject in sorted({p.subject} | p.mentions):
                self._by_subject.setdefault(subject, []).append(i)

    def grades(self, query: _Query) -> dict[int, int]:
        """Corpus index -> grade (1..3) for every passage with grade > 0."""
        graded = ((i, _grade(query, self._passages[i])) for i in self._by_subject.get(query.subject, []))
        return {i: g for i, g in graded if g > 0}


def _eval_set(
    name: str,
    description: str,
    members: list[tuple[str, _Query, np.ndarray]],
    passages: list[_Passage],
    docids: list[str],
    grader: _Grader,
    cfg: BuiltinSize,
) -> EvalSet:
    """Candidates = BM25 top-k; qrels judge every candidate plus every grade>0 passage."""
    graded = name == "builtin-dl"
    queries, candidates, qrels, used = {}, {}, {}, set()
    for qid, query, ranking in members:
        top = ranking[: cfg.candidates_per_query].tolist()
        judged = dict.fromkeys(top, 0)
        for i, g in grader.grades(query).items():
            judged[i] = g if graded else int(g >= 2)
        queries[qid] = query.text
        candidates[qid] = [docids[i] for i in top]
        qrels[qid] = {docids[i]: g for i, g in sorted(judged.items())}
        used.update(judged)
    return EvalSet(
        name=name,
        queries=queries,
        passages={docids[i]: passages[i].text for i in sorted(used)},
        candidates=candidates,
        qrels=qrels,
        binary_rel_threshold=2 if graded else 1,
        description=description,
    )


def _training_pairs(
    rng: random.Random,
    cfg: BuiltinSize,
    queries: list[_Query],
    rankings: list[np.ndarray],
    passages: list[_Passage],
    grader: _Grader,
) -> list[TrainingPair]:
    """Per train query: grade>=2 positives and as many negatives, mostly BM25 hard negatives."""
    pairs: list[TrainingPair] = []
    for query, ranking in zip(queries, rankings):
        graded = grader.grades(query)
        positives = sorted(i for i, g in graded.items() if g >= 2)
        rng.shuffle(positives)
        positives = positives[: cfg.max_positives_per_query]
        n_hard = round(len(positives) * cfg.hard_negative_fraction)
        hard_pool = [i for i in ranking[: cfg.hard_negative_depth].tolist() if graded.get(i, 0) < 2]
        negatives = rng.sample(hard_pool, min(n_hard, len(hard_pool)))
        while len(negatives) < len(positives):  # the rest are random non-relevant passages
            i = rng.randrange(len(passages))
            if graded.get(i, 0) < 2 and i not in negatives:
                negatives.append(i)
        pairs += [TrainingPair(query.text, passages[i].text, 1.0) for i in positives]
        pairs += [TrainingPair(query.text, passages[i].text, 0.0) for i in negatives]
    rng.shuffle(pairs)
    return pairs
