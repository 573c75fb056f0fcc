"""The shipped answer verifier: it loads, scores deterministically (the dot product the model
file describes), a higher threshold never escalates more, the cascade check says why, and
``scripts/train_verifier.py`` reproduces it from the public data (``shared/data/routing``)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from skinflint.accounting import Usage
from skinflint.call import Call, Message, ModelKind, ModelSpec, Role, TextPart, ToolUsePart
from skinflint.pipeline import verifier as verifier_module
from skinflint.pipeline.cascade import VerifierCheck, failed_check
from skinflint.pipeline.verifier import AnswerVerifier, VerifierModelError
from skinflint.pipeline.verifier_features import extract
from skinflint.providers.base import ProviderResponse, StopReason

ROOT = Path(__file__).resolve().parent.parent
DATA = resources.files("skinflint") / "data"
QUESTION = "Tom gets 4 car washes a month. Each car wash costs $15. How much does he pay a year?"
RIGHT = "He pays 4 * 15 = <<4*15=60>>60 a month, 60 * 12 = <<60*12=720>>720 a year.\n#### 720"
SLIP = "He pays 4 * 15 = <<4*15=60>>60 a month, 60 * 12 = <<60*12=620>>620 a year.\n#### 620"
ANSWERS = [
    RIGHT,
    SLIP,
    "He pays about 700 dollars, assuming 12 months.",
    "He pays 720 / 7 = 102.86 a week.\n#### 102.86",
    "",
    "I am not sure.",
    "é" * 9000,
]


def test_shipped_model_loads_and_scores_deterministically() -> None:
    first, second = AnswerVerifier.load(), AnswerVerifier.load()
    meta = json.loads((DATA / "verifier_model.json").read_text())
    assert first.default_threshold == meta["default_threshold"]
    assert 0.0 < first.default_threshold < 1.0
    for answer in ANSWERS:
        a = first.score(QUESTION, answer)
        assert a == second.score(QUESTION, answer) == first.score(QUESTION, answer)
        assert 0.0 < a.probability < 1.0
        # The probability is the logistic of the standardized dot product in the model file.
        x = extract(QUESTION, answer)
        z = meta["intercept"] + sum(
            w * (v - m) / s
            for w, v, m, s in zip(meta["coef"], x, meta["mean"], meta["scale"], strict=True)
        )
        assert a.probability == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-9)


def test_an_arithmetic_slip_scores_higher_than_the_same_answer_right() -> None:
    model = AnswerVerifier.load()
    right, slip = model.score(QUESTION, RIGHT), model.score(QUESTION, SLIP)
    assert right.wrong_steps == ()
    # The slip is seen twice: in the <<annotation>> and in the written step.
    assert [c.expression for c in slip.wrong_steps] == ["60*12", "60 * 12"]
    assert slip.probability > model.default_threshold >= right.probability


def call_of(question: str) -> Call:
    return Call(
        model=ModelSpec("auto", ModelKind.AUTO),
        messages=(Message(Role.USER, (TextPart(question),)),),
        request_id="r",
    )


def answer(text: str, tool: bool = False) -> Any:
    content: tuple[Any, ...] = (TextPart(text),)
    if tool:
        content += (ToolUsePart("t1", "lookup", {"q": "x"}),)
    return ProviderResponse("anthropic", "m", content, StopReason.END_TURN, Usage(1, 1))


def test_a_higher_threshold_never_escalates_more() -> None:
    model = AnswerVerifier.load()
    call = call_of(QUESTION)
    previous: set[int] | None = None
    for threshold in [i / 20 for i in range(21)]:
        check = VerifierCheck(model, threshold)
        escalated = {
            i
            for i, text in enumerate(ANSWERS)
            if failed_check(call, answer(text), ("verifier",), check) is not None
        }
        if previous is not None:
            assert escalated <= previous
        previous = escalated
    assert previous == set()  # threshold 1.0: nothing is above it


def test_the_verifier_check_says_why_and_is_opt_in() -> None:
    model = AnswerVerifier.load()
    call = call_of(QUESTION)
    check = VerifierCheck(model, 0.5, "features.qa.cascade_verifier_threshold")
    reason = failed_check(call, answer(SLIP), ("verifier",), check)
    assert reason is not None
    score = model.score(QUESTION, SLIP).probability
    assert reason.startswith(f"verifier (answer score {score:.3f} > threshold 0.500, ")
    assert "features.qa.cascade_verifier_threshold" in reason
    assert "60*12 = 620 (recomputed 720)" in reason
    assert failed_check(call, answer(RIGHT), ("verifier",), check) is None
    # Not listed, no model loaded, or a tool call: the verifier does not run.
    assert failed_check(call, answer(SLIP), ("schema", "refusal", "empty"), check) is None
    assert failed_check(call, answer(SLIP), ("verifier",), None) is None
    assert failed_check(call, answer(SLIP, tool=True), ("verifier",), check) is None


def test_a_model_of_other_features_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = tmp_path / "skinflint" / "data"
    data.mkdir(parents=True)
    meta = json.loads((DATA / "verifier_model.json").read_text())
    meta["features"] = [*meta["features"][:-1], "something_else"]
    (data / "verifier_model.json").write_text(json.dumps(meta))
    monkeypatch.setattr(verifier_module.resources, "files", lambda _package: tmp_path / "skinflint")
    with pytest.raises(VerifierModelError, match="other features"):
        AnswerVerifier.load()


def test_training_script_reproduces_the_shipped_model(tmp_path: Path) -> None:
    """A few seconds (30 fits on ~940 answers): the retrained model equals the shipped one."""
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_verifier.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    shipped = json.loads((DATA / "verifier_model.json").read_text())
    rebuilt = json.loads((tmp_path / "verifier_model.json").read_text())
    assert rebuilt["trainer"] == shipped["trainer"]  # same data files (by SHA-256), same setup
    assert rebuilt["features"] == shipped["features"]
    assert rebuilt["cv"] == shipped["cv"]
    assert rebuilt["default_threshold"] == pytest.approx(shipped["default_threshold"], abs=1e-5)
    assert rebuilt["intercept"] == pytest.approx(shipped["intercept"], abs=1e-6)
    for key in ("coef", "mean", "scale"):
        assert rebuilt[key] == pytest.approx(shipped[key], abs=1e-6), key
