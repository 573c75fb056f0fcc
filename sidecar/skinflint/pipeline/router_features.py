"""Feature extraction of the routing classifier, shared by training and the hot path.

One definition, used by ``scripts/train_router.py`` and by ``router_model.RouterModel`` at
run time, so the shipped weights always mean what the sidecar computes. Every feature is a
string hashed (CRC-32, stdlib) into ``2**bits`` buckets with a value; the model is a sparse
dot product over those buckets, so no numpy is needed at run time.

Learned features (present in the public training data) come from the prompt text only:

* word unigrams and bigrams of the lowercased prompt (numbers folded to their digit count),
  each weighted ``1/sqrt(n)`` so long prompts do not dominate by length alone;
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
HEAD_CHARS = 3000
TAIL_CHARS = 1000

_WORD = re.compile(r"[a-z]+|\d+")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_ARITHMETIC = re.compile(r"\d\s*[-+*/\u00d7\u00f7^=%]\s*\d")
_CHOICE_LINE = re.compile(r"^\s*[A-D][.)]\s", re.MULTILINE)
_CODE = re.compile(r"```|\bdef |\bclass |\bfunction\b|\breturn\b|[{};]\s*$|=>|#include", re.M)
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


def text_features(prompt: str) -> list[tuple[str, float]]:
    """The learned features of ``prompt`` as (name, value) pairs."""
    text = (
        prompt
        if len(prompt) <= HEAD_CHARS + TAIL_CHARS
        else (prompt[:HEAD_CHARS] + " " + prompt[-TAIL_CHARS:])
    )
    lowered = text.lower()
    words = [w if not w.isdigit() else f"<{min(len(w), 6)}d>" for w in _WORD.findall(lowered)]
    grams = set(words)
    grams.update(f"{a} {b}" for a, b in itertools.pairwise(words))
    out: list[tuple[str, float]] = []
    if grams:
        weight = 1.0 / len(grams) ** 0.5
        out.extend((f"w:{g}", weight) for g in grams)
    digits = sum(ch.isdigit() for ch in text)
    sentences = len(_SENTENCE_END.findall(text))
    wordset = set(words)
    out += [
        (f"len:{_bucket(len(prompt))}", 1.0),
        (f"words:{_bucket(len(words))}", 1.0),
        (f"digits:{_bucket(digits)}", 1.0),
        (f"sentences:{_bucket(sentences)}", 1.0),
        (f"questions:{min(text.count('?'), 3)}", 1.0),
        (f"arith:{min(len(_ARITHMETIC.findall(text)), 3)}", 1.0),
        (f"mathwords:{min(len(wordset & _MATH_WORDS), 3)}", 1.0),
        (f"stepwords:{min(len(wordset & _STEP_WORDS), 4)}", 1.0),
        (f"choices:{min(len(_CHOICE_LINE.findall(text)), 4)}", 1.0),
        (f"code:{min(len(_CODE.findall(text)), 3)}", 1.0),
    ]
    return out


def bucket_of(name: str, bits: int) -> int:
    """The hashed bucket of a feature name (CRC-32 of its UTF-8 bytes, low ``bits`` bits)."""
    return zlib.crc32(name.encode("utf-8")) & ((1 << bits) - 1)


def hashed(prompt: str, bits: int) -> dict[int, float]:
    """The prompt's features summed per bucket (what both training and inference use)."""
    vector: dict[int, float] = {}
    mask = (1 << bits) - 1
    crc = zlib.crc32
    for name, value in text_features(prompt):
        index = crc(name.encode("utf-8")) & mask
        vector[index] = vector.get(index, 0.0) + value
    return vector


__all__ = ["HEAD_CHARS", "TAIL_CHARS", "Context", "bucket_of", "hashed", "text_features"]
