"""The public routing data (RouteLLM's GSM8K and MMLU evaluations) as rows, split and labelled.

Shared by ``scripts/train_router.py``, ``scripts/train_verifier.py`` and ``bench/routing.py``
(development only: nothing here ships). Provenance and column meanings are in
``../shared/data/SOURCES.md`` (routing/).

* label ``needs_strong``: the cheap model (Mixtral-8x7B) was wrong and the strong one
  (GPT-4-1106) right; when both are wrong the cheap one costs less for the same result;
* split: by a hash of the prompt text (SHA-256; 30 % test), so it never depends on file order
  and duplicate prompts always land on the same side;
* ``mmlu_high_school_mathematics`` is flagged ``artifact`` (GPT-4 scores 0.03 there because
  of the first-letter check, not the model): kept out of training and reported apart;
* contaminated prompts (RouteLLM's lists) are dropped everywhere, as RouteLLM does.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

CHEAP = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
ARTIFACT_SUBJECT = "high_school_mathematics"
TEST_PERCENT = 30
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Row:
    dataset: str  # "gsm8k" or "mmlu"
    subject: str  # the MMLU subject; "" for GSM8K
    prompt: str
    cheap_ok: bool
    strong_ok: bool
    #: The models' answers where the data has them (GSM8K), for output-token counts.
    cheap_response: str = ""
    strong_response: str = ""

    @property
    def needs_strong(self) -> bool:
        return self.strong_ok and not self.cheap_ok

    @property
    def split(self) -> str:
        return split_of(self.prompt)

    @property
    def artifact(self) -> bool:
        return self.subject == ARTIFACT_SUBJECT


def split_of(prompt: str) -> str:
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") % 100 < TEST_PERCENT else "train"


def data_dir(explicit: str | None = None) -> Path:
    """``--data``, else ``$SKINFLINT_ROUTING_DATA``, else ``../shared/data/routing`` beside
    the checkout (or beside ``/work/main`` for a worktree under ``/work/wt``), else
    ``/work/shared/data/routing`` (where the evaluation data lives on the project's machines)."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("SKINFLINT_ROUTING_DATA"):
        return Path(env)
    for base in (ROOT.parent, ROOT.parent.parent, Path("/work")):
        candidate = base / "shared" / "data" / "routing"
        if candidate.is_dir():
            return candidate
    raise SystemExit(
        "routing data not found: pass --data or set SKINFLINT_ROUTING_DATA to the directory "
        "holding gsm8k_responses.csv and mmlu/ (see shared/data/SOURCES.md)"
    )


def _truth(value: str) -> bool:
    if value not in ("True", "False"):
        raise ValueError(f"expected True/False, got {value!r}")
    return value == "True"


def _contaminated(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as f:
        return {json.loads(line)["eval_prompt"] for line in f if line.strip()}


def load_rows(directory: Path) -> list[Row]:
    """Every usable row, GSM8K first then MMLU subjects in name order; contaminated dropped."""
    csv.field_size_limit(1 << 24)
    rows: list[Row] = []
    dropped = _contaminated(directory / "gsm8k_contaminated_prompts.jsonl")
    with (directory / "gsm8k_responses.csv").open(encoding="utf-8", newline="") as f:
        for rec in csv.DictReader(f):
            if rec["prompt"] in dropped:
                continue
            rows.append(
                Row(
                    "gsm8k",
                    "",
                    rec["prompt"],
                    _truth(rec[CHEAP]),
                    _truth(rec[STRONG]),
                    rec[f"{CHEAP}_response"],
                    rec[f"{STRONG}_response"],
                )
            )
    dropped = _contaminated(directory / "mmlu" / "contaminated_prompts.jsonl")
    for path in sorted((directory / "mmlu").glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        with path.open(encoding="utf-8", newline="") as f:
            for rec in csv.DictReader(f):
                if rec["prompt"] in dropped:
                    continue
                rows.append(
                    Row("mmlu", subject, rec["prompt"], _truth(rec[CHEAP]), _truth(rec[STRONG]))
                )
    return rows


def file_digests(directory: Path, *, mmlu: bool = True) -> dict[str, str]:
    """SHA-256 of every input file (of the GSM8K ones only without ``mmlu``), recorded in the
    model so a retrain can be checked."""
    paths = [directory / "gsm8k_responses.csv", directory / "gsm8k_contaminated_prompts.jsonl"]
    if mmlu:
        paths += sorted((directory / "mmlu").glob("*"))
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths
    }
