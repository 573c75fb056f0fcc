"""Feature extraction of the routing classifier, shared by training and the hot path.

One definition, used by ``scripts/train_router.py`` and by ``router_model.RouterModel`` at
run time, so the shipped weights always mean what the sidecar computes. Every feature is
hashed (CRC-32, stdlib) into ``2**bits`` buckets with a value; the model is a sparse dot
product over those buckets, so no numpy is needed at run time.

Learned features (present in the public training data) come from the prompt text only:

* word unigrams and bigrams of the lowercased prompt (numbers folded to their digit count),
  each weighted ``1/sqrt(n)`` so long prompts do not dominate by length alone (a bigram's
  hash mixes its words' hashes, so each word is hashed once);
* log2 buckets of the prompt's length in characters and words;
* cues: math (digits, arithmetic between numbers, math words), code (fences, keywords,
  braces), multi-step (sentences, "then"/"each"/"total"), multiple choice (``A.`` lines),
  question marks.

Long prompts are cut to ``HEAD_CHARS`` + ``TAIL_CHARS`` before tokenizing (lengths use the
full text), which bounds the time on the hot path.

The request context (task-type hint, ``max_tokens``, tools, turn depth) is not in the public
data, so it is *not* learned: ``router_model`` adds documented, hand-set logit offsets for it
(``Context``).
"""

from __future__ import annotations

import itertools
import re
import zlib
from dataclasses import dataclass

#: Characters of the prompt tokenized from its start and from its end.
HEAD_CHARS = 2000
TAIL_CHARS = 500

_WORD = re.compile(r"[a-z]+|\d+")
_DIGITS = re.compile(r"\d+")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_ARITHMETIC = re.compile(r"\d\s*[-+*/\u00d7\u00f7^=%]\s*\d")
_CHOICE_LINE = re.compile(r"^\s*[A-D][.)]\s", re.MULTILINE)
_CODE_MARKS = ("```", "def ", "class ", "function", "return ", "import ", "{\n", ";\n", "=>")
_MATH_WORDS = frozenset(
    [
        "calculate",
        "compute",
        "solve",
        "equation",
        "sum",
        "total",
        "percent",
        "percentage",
        "average",
        "ratio",
        "probability",
        "integer",
        "fraction",
        "remainder",
        "product",
        "multiply",
        "divide",
        "derivative",
        "integral",
    ]
)
_STEP_WORDS = frozenset(
    ["then", "after", "each", "every", "total", "remaining", "left", "twice", "half", "times"]
)


@dataclass(frozen=True, slots=True)
class Context:
    """The request context around the prompt (not learned: see ``router_model``)."""

    task_type: str | None = None
    max_tokens: int | None = None
    tools: int = 0
    #: User turns in the conversation (1 for a single question).
    turns: int = 1


def _bucket(n: int) -> int:
    """log2 bucket: 0 -> 0, 1 -> 1, 2-3 -> 2, 4-7 -> 3, ..."""
    return min(n.bit_length(), 20)


def _cut(prompt: str) -> str:
    if len(prompt) <= HEAD_CHARS + TAIL_CHARS:
        return prompt
    return prompt[:HEAD_CHARS] + " " + prompt[-TAIL_CHARS:]


def _words(text: str) -> list[str]:
    """Lowercased words; a number becomes its digit count (``<3d>``), capped at 6."""
    return [w if not w.isdigit() else f"<{min(len(w), 6)}d>" for w in _WORD.findall(text.lower())]


def cue_features(prompt: str, text: str, words: list[str]) -> list[str]:
    """The named (non n-gram) features of a prompt, each with value 1."""
    digits = sum(len(w) for w in _DIGITS.findall(text))
    sentences = len(_SENTENCE_END.findall(text))
    wordset = set(words)
    return [
        f"len:{_bucket(len(prompt))}",
        f"words:{_bucket(len(words))}",
        f"digits:{_bucket(digits)}",
        f"sentences:{_bucket(sentences)}",
        f"questions:{min(text.count('?'), 3)}",
        f"arith:{min(len(_ARITHMETIC.findall(text)), 3)}",
        f"mathwords:{min(len(wordset & _MATH_WORDS), 3)}",
        f"stepwords:{min(len(wordset & _STEP_WORDS), 4)}",
        f"choices:{min(len(_CHOICE_LINE.findall(text)), 4)}",
        f"code:{min(sum(text.count(mark) for mark in _CODE_MARKS), 3)}",
    ]


def _crc(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def hashed(prompt: str, bits: int) -> dict[int, float]:
    """The prompt's features summed per bucket (what both training and inference use).

    A word's hash is CRC-32 of ``"w:" + word``; a bigram's is the two word hashes mixed
    (``(a * 0x9E3779B1 ^ b) mod 2**32``), so each word is hashed once; distinct n-grams get
    ``1/sqrt(n)`` each. A cue's hash is CRC-32 of its name (``cue_features``).
    """
    mask = (1 << bits) - 1
    text = _cut(prompt)
    words = _words(text)
    seen: dict[str, int] = {}
    hashes = []
    for word in words:
        h = seen.get(word)
        if h is None:
            h = seen[word] = _crc("w:" + word)
        hashes.append(h)
    grams = set(hashes)
    grams.update(((a * 0x9E3779B1) ^ b) & 0xFFFFFFFF for a, b in itertools.pairwise(hashes))
    vector: dict[int, float] = {}
    if grams:
        weight = 1.0 / len(grams) ** 0.5
        for g in grams:
            index = g & mask
            vector[index] = vector.get(index, 0.0) + weight
    for name in cue_features(prompt, text, words):
        index = _crc(name) & mask
        vector[index] = vector.get(index, 0.0) + 1.0
    return vector


def bucket_of(name: str, bits: int) -> int:
    """The hashed bucket of a cue feature name (CRC-32 of its UTF-8 bytes, low ``bits``)."""
    return _crc(name) & ((1 << bits) - 1)


__all__ = ["HEAD_CHARS", "TAIL_CHARS", "Context", "bucket_of", "cue_features", "hashed"]
