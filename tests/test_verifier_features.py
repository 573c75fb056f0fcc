"""The answer verifier's features on real-looking answers (GSM8K style, as Mixtral writes them)
and the safe arithmetic under them."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import pytest

from skinflint.pipeline import arith
from skinflint.pipeline.verifier_features import (
    FEATURES,
    analyse,
    extract,
    final_answer,
    numbers,
    wrong_steps,
)

QUESTION = (
    "Katerina uses 8 topaz gemstones per necklace. Each gemstone is one inch long, each silver "
    "bead is one-quarter of an inch long, and each necklace is 25 inches long. How many beads "
    "does she use per necklace?"
)
CORRECT = (
    " Katerina uses 25 - (8 \\* 1) = 25 - 8 = <<25-8=17>>17 inches for the beads.\n"
    "Each bead is one-quarter of an inch long, so she uses 17 / (1/4) = 17 \\* 4 = "
    "<<17*4=68>>68 beads.\n#### 68\n"
)
WRONG = (
    " Katerina uses 25 - 8 = <<25-8=17>>17 inches for the beads.\n"
    "So she uses 17 * 4 = <<17*4=58>>58 beads.\n#### 58\n"
)


def feature(question: str, answer: str, name: str) -> float:
    return extract(question, answer)[FEATURES.index(name)]


def test_a_correct_chain_has_no_wrong_step_and_a_computed_final_answer() -> None:
    features, wrong = analyse(QUESTION, CORRECT)
    assert len(features) == len(FEATURES)
    assert wrong == []
    values = dict(zip(FEATURES, features, strict=True))
    assert values["any_wrong"] == 0.0
    assert values["annotations"] > 0 and values["steps_checked"] > 0
    assert values["final_hash"] == 1.0 and values["final_missing"] == 0.0
    assert values["final_is_computed"] == 1.0
    assert values["final_not_integer"] == 0.0
    assert final_answer(CORRECT) == (Fraction(68), "hash")


def test_a_wrong_computation_is_found_in_the_annotation_and_in_the_text() -> None:
    wrong = wrong_steps(WRONG)
    assert [(c.expression, c.value) for c in wrong] == [("17*4", 58), ("17 * 4", 58)]
    assert all(Fraction(68) in c.computed for c in wrong)
    assert feature(QUESTION, WRONG, "any_wrong") == 1.0
    assert feature(QUESTION, WRONG, "annotations_wrong") == 1.0
    assert feature(QUESTION, WRONG, "steps_wrong") == 1.0


@pytest.mark.parametrize(
    "answer",
    [
        "He needs $1,100 - $400 = $700 for the printer.",
        "Each paid 12 + 43 + 15 + 4 + 22 = $<<12+43+15+4+22=96>>96 / 3 = $<<96/3=32>>32.",
        "A discount of 3 * 20% = 60% off.",
        "The rest is $2 * (1 + 150%) = $5.",
        "100 / 3 = 33.33 per person, so 5000 / 3 = 1,667 in total.",
        "He earned 40 x 1.25 + 20 x 1.5 = <<40*1.25+20*1.5=80>>80 dollars.",
        "That is 2^3 = 8 cubes and 1.5 \\times 4 = 6 more.",
    ],
)
def test_steps_written_the_usual_ways_hold(answer: str) -> None:
    assert wrong_steps(answer) == []


def test_rounding_to_a_whole_number_is_not_an_arithmetic_slip() -> None:
    answer = "They need 73 / 8 = 9 buses.\n#### 9"
    assert wrong_steps(answer) == []
    assert feature("73 people, 8 per bus.", answer, "rounded_steps") > 0


def test_a_missing_or_odd_final_answer() -> None:
    assert final_answer("I cannot tell from the question.") == (None, "none")
    assert feature("How many?", "I cannot tell from the question.", "final_missing") == 1.0
    assert final_answer("So the answer is 12.5 apples.") == (Fraction(25, 2), "phrase")
    assert feature("How many?", "So the answer is 12.5 apples.", "final_not_integer") == 1.0
    assert feature("How many?", "#### -4", "final_negative") == 1.0
    # No marker: the last number stands for the answer.
    assert final_answer("She has 3 + 4 = 7 apples.") == (Fraction(7), "last")


def test_question_numbers_the_answer_never_uses_and_hedges() -> None:
    question = "Ann has 12 apples and 30 pears. She eats 5 apples. How many apples are left?"
    ignores = "12 - 5 = 7\n#### 7"
    assert feature(question, ignores, "question_numbers_unused_share") == pytest.approx(1 / 3)
    hedged = "Assuming she eats about half, however, we round 12 - 5 = 7.\n#### 7"
    assert feature(question, hedged, "hedges") >= 2
    assert feature(question, hedged, "corrections") >= 1
    assert feature(question, ignores, "hedges") == 0


def test_numbers_read_commas_dollars_and_percents() -> None:
    assert numbers("12 - 5 = 7") == [Fraction(12), Fraction(5), Fraction(7)]  # no "-5"
    assert numbers("Pay $1,250.50 or 40% of 3,000, not -7.") == [
        Fraction("1250.5"),
        Fraction(40),
        Fraction(3000),
        Fraction(-7),
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16 - 3", Fraction(13)),
        ("$1,100 - $400", Fraction(700)),
        ("17 \\* (1/4)", Fraction(17, 4)),
        ("-(2 + 3) * 4", Fraction(-20)),
        ("20% * 50", Fraction(10)),
        ("2^10", Fraction(1024)),
        ("6 \u00d7 7 \u00f7 2", Fraction(21)),
    ],
)
def test_evaluate_is_exact(text: str, value: Fraction) -> None:
    assert arith.evaluate(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "2 ** 3",  # Python power is not arithmetic an answer writes
        "2^99999",  # exponent out of range: refused, not computed
        "10^20 * 10^20",  # beyond the magnitude a word problem has
        "1 / 0",
        "3 +",
        "(1 + 2",
        "twelve apples",
        "",
    ],
)
def test_evaluate_refuses_anything_but_small_arithmetic(text: str) -> None:
    assert arith.evaluate(text) is None


def test_readings_of_a_percentage_and_closeness() -> None:
    assert arith.readings("1 + 150%") == {Fraction(151), Fraction(5, 2)}
    assert arith.close(Fraction(100, 3), Fraction(3333, 100))
    assert arith.close(Fraction(5000, 3), Fraction(1667))
    assert not arith.close(Fraction(14400), Fraction(86400))
    assert not arith.close(Fraction(68), Fraction(58))


@pytest.mark.parametrize(
    "answer",
    [
        "<<" + "(" * 3000 + "1+1" + ")" * 3000 + "=2>>",  # deep nesting: no RecursionError
        "=".join(["1+1"] * 1500),  # one line of 1,499 equalities
        "<<1+1=2>>" * 2000,
        "= " + "1 " * 3000,
        "9" * 6000 + " = 1+1",  # a 6,000-digit number: int() would refuse it
        "1% * " * 1000 + "= 5",
    ],
)
def test_pathological_answers_are_bounded_and_never_raise(answer: str) -> None:
    started = time.perf_counter()
    features, _ = analyse("How many?", answer)
    assert len(features) == len(FEATURES)
    assert all(math.isfinite(v) for v in features)
    assert time.perf_counter() - started < 1.0  # ~50 ms at worst on a loaded 2-core machine


def test_evaluate_caps_the_expression_size() -> None:
    assert arith.evaluate("(" * 40 + "1" + ")" * 40) is None  # more than MAX_TOKENS tokens
    assert arith.evaluate("(" * 20 + "1" + ")" * 20) == 1
