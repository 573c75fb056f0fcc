"""Deterministic answer generator shared by the emulators.

The reply is derived from the prompt only, so the same request always gets the same answer:

* text: ``"Echo: "`` + the first ``ECHO_WORDS`` words of the last user text;
* JSON mode (OpenAI ``json_object``): ``{"echo": "<those words>"}``; a JSON schema
  (OpenAI ``json_schema``, Anthropic ``output_config.format``): an instance built from the
  schema (``sample_for_schema``);
* tools: a forced tool (Anthropic ``tool_choice`` ``tool``/``any``, OpenAI ``required`` or a
  named function) is always called; with ``auto`` a tool is called when the last user text
  names it (and the last user turn is not itself a tool result); the input holds every
  ``required`` property with a value of the declared type.

``complete_text`` applies the documented stop rules: generation ends at the first stop
sequence (the stop text is not returned) or when ``max_tokens`` output tokens are used,
whichever comes first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from skinflint.emulators.common import Tokenizer, first_words

ECHO_WORDS = 48

StopKind = Literal["end", "max_tokens", "stop_sequence"]


def reply_text(last_user_text: str) -> str:
    snippet = first_words(last_user_text, ECHO_WORDS)
    return f"Echo: {snippet}" if snippet else "Echo: (nothing to echo)"


def json_reply(last_user_text: str) -> str:
    return json.dumps({"echo": first_words(last_user_text, ECHO_WORDS)})


@dataclass(frozen=True)
class TextCompletion:
    """A text reply after the stop rules: ``pieces`` join to ``text``; ``tokens`` is usage."""

    text: str
    pieces: tuple[str, ...]
    tokens: int
    stop: StopKind
    stop_sequence: str | None


def complete_text(
    full_text: str,
    tokenizer: Tokenizer,
    max_tokens: int | None,
    stop_sequences: Sequence[str] = (),
) -> TextCompletion:
    """Cut ``full_text`` at the first stop sequence, then at ``max_tokens`` tokens."""
    cut = len(full_text)
    matched: str | None = None
    for seq in stop_sequences:
        pos = full_text.find(seq) if seq else -1
        if 0 <= pos < cut:
            cut, matched = pos, seq
    pieces: list[str] = []
    used = 0
    truncated = False
    for piece, n in tokenizer.pieces(full_text[:cut]):
        if max_tokens is not None and used + n > max_tokens:
            truncated = True
            break
        pieces.append(piece)
        used += n
    stop: StopKind = "max_tokens" if truncated else ("stop_sequence" if matched else "end")
    return TextCompletion(
        text="".join(pieces),
        pieces=tuple(pieces),
        tokens=used,
        stop=stop,
        stop_sequence=matched if stop == "stop_sequence" else None,
    )


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments)

    def tokens(self, tokenizer: Tokenizer) -> int:
        return tokenizer.count(self.name) + tokenizer.count(self.arguments_json)


def choose_tool(
    tool_names: Sequence[str],
    *,
    mode: Literal["auto", "any", "none"],
    forced: str | None,
    last_user_text: str,
    after_tool_result: bool,
) -> str | None:
    """Which tool to call, if any (rules in the module docstring)."""
    if forced is not None:
        return forced
    if mode == "none" or not tool_names:
        return None
    words = set(re.findall(r"[A-Za-z0-9_-]+", last_user_text))
    named = next((n for n in tool_names if n in words), None)
    if mode == "any":
        return named or tool_names[0]
    return None if after_tool_result else named


def sample_for_schema(
    schema: Any,
    text: str,
    *,
    all_properties: bool = False,
    root: Mapping[str, Any] | None = None,
    depth: int = 0,
) -> Any:
    """A value valid for the JSON ``schema`` (required properties only unless
    ``all_properties``), strings taken from ``text``. Supports ``type`` (incl. lists),
    ``enum``, ``const``, ``properties``/``required``, ``items``, ``minItems``, ``minimum``,
    ``maxLength``, ``anyOf``/``oneOf``/``allOf`` (first branch) and local ``$ref``."""
    if not isinstance(schema, Mapping) or depth > 8:
        return first_words(text, 4) or "x"
    root = root if root is not None else schema
    if isinstance(ref := schema.get("$ref"), str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return sample_for_schema(
            target, text, all_properties=all_properties, root=root, depth=depth + 1
        )
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return sample_for_schema(
                schema[key][0], text, all_properties=all_properties, root=root, depth=depth + 1
            )
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        names = list(props) if all_properties else list(schema.get("required") or [])
        return {
            name: sample_for_schema(
                props.get(name, {}),
                text,
                all_properties=all_properties,
                root=root,
                depth=depth + 1,
            )
            for name in names
        }
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1)
        if schema.get("maxItems") == 0:
            count = 0
        item = sample_for_schema(
            schema.get("items", {}), text, all_properties=all_properties, root=root, depth=depth + 1
        )
        return [item for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = max(int(low) + (1 if "exclusiveMinimum" in schema else 0), 1)
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    value = first_words(text, 4) or "x"
    if isinstance(max_len := schema.get("maxLength"), int):
        value = value[:max_len]
    return value
