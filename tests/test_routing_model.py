"""The shipped routing classifier: it loads, checks its weights, scores deterministically, and
``scripts/train_router.py`` reproduces it from the public data (``shared/data/routing``)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from array import array
from importlib import resources
from pathlib import Path

import pytest

from skinflint.pipeline import router_model
from skinflint.pipeline.router_features import Context, hashed
from skinflint.pipeline.router_model import RouterModel, RouterModelError

ROOT = Path(__file__).resolve().parent.parent
DATA = resources.files("skinflint") / "data"


def test_shipped_model_loads_and_scores_deterministically() -> None:
    first, second = RouterModel.load(), RouterModel.load()
    meta = json.loads((DATA / "router_model.json").read_text())
    assert first.bits == meta["bits"] and first.default_threshold == meta["default_threshold"]
    assert 0.0 < first.default_threshold < 1.0
    prompts = ["", "What is 2 + 2?", "def f(x):\n    return x * 2\n" * 40, "é" * 9000]
    for prompt in prompts:
        a, b = first.score(prompt), second.score(prompt)
        assert a == b
        assert 0.0 < a.probability < 1.0
        assert first.score(prompt) == a  # no state kept between calls
    # The logit is the sparse dot product over the hashed features, plus the intercept.
    weights = array("f")
    weights.frombytes((DATA / meta["weights_file"]).read_bytes())
    prompt = prompts[1]
    expected = meta["intercept"] + sum(weights[i] * v for i, v in hashed(prompt, 16).items())
    assert first.learned_logit(prompt) == pytest.approx(expected, rel=1e-12)


def test_a_harder_looking_question_scores_higher() -> None:
    model = RouterModel.load()
    easy = model.score("What is the capital of France?").probability
    hard = model.score(
        "A store sells pencils at 3 for $0.75 and pens at 2 for $1.50. Tom buys 12 pencils and "
        "8 pens, then returns a quarter of the pens. He pays with a $20 bill. How much change "
        "does he get, and what percentage of his original spending did the returns save?"
    ).probability
    assert hard > easy


def test_context_priors_are_applied_in_the_documented_direction() -> None:
    model = RouterModel.load()
    text = "Summarize the following ticket."
    base = model.score(text, Context()).probability
    assert model.score(text, Context(tools=2)).probability > base
    assert model.score(text, Context(turns=4)).probability > base
    assert model.score(text, Context(max_tokens=16)).probability < base
    assert model.score(text, Context(max_tokens=8192)).probability > base
    assert model.score(text, Context(task_type="code")).probability > base
    assert model.score(text, Context(task_type="formatting")).probability < base


def test_corrupt_weights_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = tmp_path / "skinflint" / "data"
    data.mkdir(parents=True)
    meta = json.loads((DATA / "router_model.json").read_text())
    blob = bytearray((DATA / meta["weights_file"]).read_bytes())
    blob[100] ^= 0xFF
    (data / meta["weights_file"]).write_bytes(bytes(blob))
    (data / "router_model.json").write_text(json.dumps(meta))
    monkeypatch.setattr(router_model.resources, "files", lambda _package: tmp_path / "skinflint")
    with pytest.raises(RouterModelError, match="does not match"):
        RouterModel.load()


def test_training_script_reproduces_the_shipped_weights(tmp_path: Path) -> None:
    """Slow-ish (two fits on ~10k prompts): the retrained weights equal the shipped ones."""
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_router.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    shipped = json.loads((DATA / "router_model.json").read_text())
    rebuilt = json.loads((tmp_path / "router_model.json").read_text())
    assert rebuilt["trainer"] == shipped["trainer"]  # same data files (by SHA-256), same setup
    assert rebuilt["default_threshold"] == pytest.approx(shipped["default_threshold"], abs=1e-5)
    assert rebuilt["intercept"] == pytest.approx(shipped["intercept"], abs=1e-5)
    a, b = array("f"), array("f")
    a.frombytes((DATA / shipped["weights_file"]).read_bytes())
    b.frombytes((tmp_path / rebuilt["weights_file"]).read_bytes())
    assert len(a) == len(b)
    worst = max(abs(x - y) for x, y in zip(a, b, strict=True))
    assert worst < 1e-5
    if rebuilt["weights_sha256"] != shipped["weights_sha256"]:  # equal up to float rounding
        assert hashlib.sha256(bytes(b)).hexdigest() == rebuilt["weights_sha256"]
