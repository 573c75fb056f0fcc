"""Features of a cheap model's answer for the answer verifier (cascade check ``verifier``).

One definition, used by ``scripts/train_verifier.py`` and by ``verifier.AnswerVerifier`` at
run time, so the shipped weights always mean what the sidecar computes. The router scores
the *question* before any call, and on math word problems the question says little about
which ones the cheap model gets wrong (bench/RESULTS.md); the *answer* says more: a step
whose arithmetic does not hold, a missing or odd final answer, hedging. Every feature is a
number (``FEATURES`` names them in order); the model is a dot product over them.

* computations: GSM8K-style ``<<expr=value>>`` annotations and written steps ``a op b = c``
  (chains ``a = b = c`` compare each neighbour) are recomputed exactly (``arith``): how many,
  how many wrong, the share wrong, separately for annotations and the written text;
* the final answer (``#### N``, else "the answer is N", else the last number): present or
  not, not an integer, negative, equal to a value some step computed, equal to a number of the
  question (copied rather than computed), its size against the question's numbers;
* the question's numbers the answer never uses (a forgotten quantity);
* hedges and self-corrections ("assume", "approximately", "however", "round", "can't have
  half", "wait" ...), and lengths (answer, question, steps), log-scaled.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from fractions import Fraction

from skinflint.pipeline.arith import close, evaluate, has_operator, parse_number, readings

#: Characters of an answer or a question read (bounds the time on the hot path).
MAX_CHARS = 6000

FEATURES: tuple[str, ...] = (
    "log_answer_chars",
    "log_question_chars",
    "log_steps",
    "log_question_numbers",
    "annotations",
    "annotations_wrong",
    "annotations_wrong_share",
    "steps_checked",
    "steps_wrong",
    "steps_wrong_share",
    "any_wrong",
    "rounded_steps",
    "final_missing",
    "final_hash",
    "final_not_integer",
    "final_negative",
    "final_is_computed",
    "final_in_question",
    "final_log_ratio",
    "question_numbers_unused_share",
    "answer_numbers_unexplained_share",
    "uses_variable",
    "hedges",
    "corrections",
)

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
#: A number as written: a minus sign only when it touches the digits ("-7", not "12 - 5").
_NUMBER = re.compile(
    r"(?<![\w.])(?:-(?=[$\d]))?(?:\$\s?)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?|(?<![\w\d])\.\d+"
)
_FINAL_HASH = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS = re.compile(r"(?:answer|result) is:?\s*([^\n]*)", re.IGNORECASE)
#: Where an expression can start inside the text to the left of ``=``.
_EXPR_START = re.compile(r"[\d($.\u2212-]")
#: A prefix of the text right of ``=`` made of arithmetic characters only.
_RIGHT = re.compile(r"[\s$\d.,()+*/x\u00d7\u00f7^%\\\u2212\u2013-]*")
_LATEX = (("\\times", "*"), ("\\div", "/"), ("\\cdot", "*"), ("\\$", "$"), ("\\%", "%"))
_HEDGES = re.compile(
    r"\b(?:assum\w*|approximately|approx|about|around|roughly|estimate\w*|round\w*|"
    r"can(?:no|')t (?:have|be) (?:a )?(?:half|fraction\w*|part\w*)|not possible|impossible|"
    r"not clear|unclear|ambiguous|not enough information|whole number|interpret\w*)\b",
    re.IGNORECASE,
)
_CORRECTIONS = re.compile(
    r"\b(?:however|but wait|wait|actually|mistake|incorrect|correction|re-?calculate|"
    r"let me|let's re|instead|oops|sorry|error)\b",
    re.IGNORECASE,
)
_LEFT_WINDOW = 80
#: Equalities checked per answer at most (a real answer has a few dozen; this bounds the time
#: on a pathological one such as a line of 1,000 ``=``).
MAX_CHECKS = 100
#: Unit conversions a solution brings in without the question stating them.
_UNITS = frozenset(Fraction(n) for n in (24, 30, 52, 60, 100, 365, 1000, 3600))
#: Algebra: "let x be", "x = ", "2x".
_VARIABLE = re.compile(r"\b(?:let [a-z] (?:be|=)|[a-z] = |\d[a-z]\b)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Check:
    """One recomputed step: the values the written result may mean and the values the
    expression may have (the readings of ``%``; a chain's right side read as its first number
    or as a whole expression). It holds when any pair agrees: the check is lenient on purpose,
    a false alarm costs a strong call."""

    expression: str
    written: frozenset[Fraction]
    computed: frozenset[Fraction]

    @property
    def ok(self) -> bool:
        return any(close(c, w) for c in self.computed for w in self.written)

    @property
    def rounded(self) -> bool:
        """It does not hold exactly, but the result is the expression rounded to a whole
        number (``73 / 8 = 9`` buses): a modelling choice, not an arithmetic slip."""
        return not self.ok and any(
            c.denominator != 1 and w in (math.floor(c), math.ceil(c))
            for c in self.computed
            for w in self.written
        )

    @property
    def value(self) -> Fraction:
        """The result as written (the smallest reading, for a stable choice)."""
        return min(self.written)


def _clean(text: str) -> str:
    text = text[:MAX_CHARS]
    for latex, plain in _LATEX:
        text = text.replace(latex, plain)
    return text


def annotation_checks(answer: str) -> list[Check]:
    """The ``<<a=b=c>>`` annotations, each neighbouring pair recomputed."""
    checks: list[Check] = []
    pairs = 0
    for m in itertools.islice(_ANNOTATION.finditer(answer), MAX_CHECKS):
        parts = m.group(1).split("=", MAX_CHECKS)
        for left, right in itertools.pairwise(parts):
            pairs += 1
            if pairs > MAX_CHECKS:
                return checks
            if not has_operator(left):
                continue
            computed, written = readings(left), _written(right)
            if computed and written:
                checks.append(Check(left.strip(), frozenset(written), frozenset(computed)))
    return checks


def _written(text: str) -> set[Fraction]:
    """What the right side of ``=`` may mean: its first number (``$96 / 3 = 32`` continues a
    chain after 96) and its value as an expression, with ``%`` read both ways."""
    values = readings(text)
    first = _NUMBER.search(text)
    if first is not None and not text[: first.start()].strip(" $"):
        number = parse_number(first.group(0))
        if number is not None:
            values.add(number)
            if first.group(0).endswith("%"):
                values.add(number / 100)
    return values


def _left_expression(text: str) -> tuple[str, set[Fraction]] | None:
    """The longest arithmetic expression (with an operator) that ends ``text``."""
    window = text[-_LEFT_WINDOW:]
    for m in _EXPR_START.finditer(window):
        start = m.start()
        if start > 0 and (window[start - 1].isalnum() or window[start - 1] in ".,"):
            continue
        candidate = window[start:]
        if not has_operator(candidate):
            continue
        values = readings(candidate)
        if values:
            return candidate.strip(), values
    return None


def _right_values(text: str) -> set[Fraction]:
    """What the arithmetic prefix of ``text`` may mean (a number, or an expression of a
    chain ``= 17 * 4 = 68``); empty when it does not start with one."""
    prefix = _RIGHT.match(text)
    if prefix is None:
        return set()
    candidate = prefix.group(0)[:_LEFT_WINDOW]
    # Trailing sentence punctuation is not part of the number.
    while candidate and candidate[-1] in " .,\n":
        candidate = candidate[:-1]
    while candidate:
        if evaluate(candidate, "never") is not None:
            return _written(candidate)
        # "5 x 86,400 jellyfish" -> drop the last token and retry ("x" may be a word).
        cut = max(candidate.rfind(" "), 0)
        candidate = candidate[:cut].rstrip(" .,")
    return set()


def step_checks(answer: str) -> list[Check]:
    """Written steps ``<expression> = <value>``, each ``=`` of a line checked against its
    neighbours (annotations removed first, so ``25 - 8 = <<25-8=17>>17`` reads ``25 - 8 =
    17``)."""
    checks: list[Check] = []
    text = _ANNOTATION.sub("", answer)
    pairs = 0
    for line in text.splitlines():
        parts = line.split("=", MAX_CHECKS)
        for left, right in itertools.pairwise(parts):
            pairs += 1
            if pairs > MAX_CHECKS:
                return checks
            found = _left_expression(left)
            if found is None:
                continue
            expression, computed = found
            written = _right_values(right)
            if written:
                checks.append(Check(expression, frozenset(written), frozenset(computed)))
    return checks


def numbers(text: str) -> list[Fraction]:
    out = []
    for m in _NUMBER.finditer(text):
        value = parse_number(m.group(0))
        if value is not None:
            out.append(value)
    return out


def final_answer(answer: str) -> tuple[Fraction | None, str]:
    """The final answer and where it came from: ``####``, "answer is", the last number
    ("last"), or none."""
    for pattern, source in ((_FINAL_HASH, "hash"), (_ANSWER_IS, "phrase")):
        matches = pattern.findall(answer)
        if matches:
            found = numbers(matches[-1])
            if found:
                return found[0], source
    found = numbers(answer)
    return (found[-1], "last") if found else (None, "none")


def extract(question: str, answer: str) -> list[float]:
    """The feature vector of (question, answer), in ``FEATURES`` order."""
    return analyse(question, answer)[0]


def analyse(question: str, answer: str) -> tuple[list[float], list[Check]]:
    """The feature vector of (question, answer) and the steps that do not hold (wrong, not
    merely rounded), in the order the answer shows them (annotations first)."""
    question, answer = _clean(question), _clean(answer)
    annotations = annotation_checks(answer)
    steps = step_checks(answer)
    ann_wrong = sum(not c.ok and not c.rounded for c in annotations)
    step_wrong = sum(not c.ok and not c.rounded for c in steps)
    rounded = sum(c.rounded for c in annotations + steps)
    final, source = final_answer(answer)
    q_numbers = numbers(question)
    a_numbers = set(numbers(_ANNOTATION.sub("", answer)))
    computed = {v for c in annotations + steps for v in c.written}
    unused = [n for n in set(q_numbers) if n not in a_numbers]
    # Numbers of the answer that are neither in the question nor a result of a step (nor
    # small constants such as 2, 12 or 60 a solution brings in): invented quantities.
    known = set(q_numbers) | computed
    unexplained = [n for n in a_numbers if n not in known and not (0 <= n <= 12 or n in _UNITS)]
    lines = [ln for ln in answer.splitlines() if ln.strip()]
    if final is not None and q_numbers:
        biggest = max(abs(n) for n in q_numbers) or Fraction(1)
        ratio = math.log10(float(abs(final) + 1) / float(biggest + 1))
    else:
        ratio = 0.0
    features = [
        math.log1p(len(answer)),
        math.log1p(len(question)),
        math.log1p(len(lines)),
        math.log1p(len(q_numbers)),
        math.log1p(len(annotations)),
        float(ann_wrong),
        ann_wrong / len(annotations) if annotations else 0.0,
        math.log1p(len(steps)),
        float(step_wrong),
        step_wrong / len(steps) if steps else 0.0,
        float(ann_wrong + step_wrong > 0),
        math.log1p(rounded),
        float(final is None),
        float(source == "hash"),
        float(final is not None and final.denominator != 1),
        float(final is not None and final < 0),
        float(final is not None and final in computed),
        float(final is not None and final in q_numbers),
        max(-3.0, min(3.0, ratio)),
        len(unused) / len(set(q_numbers)) if q_numbers else 0.0,
        len(unexplained) / len(a_numbers) if a_numbers else 0.0,
        float(_VARIABLE.search(answer) is not None),
        float(len(_HEDGES.findall(answer))),
        float(len(_CORRECTIONS.findall(answer))),
    ]
    wrong = [c for c in annotations + steps if not c.ok and not c.rounded]
    return features, wrong


def wrong_steps(answer: str) -> list[Check]:
    """The recomputed steps that do not hold (for route reasons and tests)."""
    return analyse("", answer)[1]


__all__ = ["FEATURES", "Check", "analyse", "extract", "final_answer", "numbers", "wrong_steps"]
