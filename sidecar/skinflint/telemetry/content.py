"""Prompt and answer text for spans, only when ``telemetry.capture_content`` is on.

The shape follows the GenAI conventions' ``gen_ai.input.messages`` / ``gen_ai.output.messages``
(a JSON list of ``{role, parts: [{type, content}]}``). Images are named, never inlined.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from skinflint.call import (
    Call,
    ImagePart,
    Part,
    TextPart,
    ToolResultPart,
    ToolUsePart,
    thaw_json,
)
from skinflint.providers.base import Content

INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"


def _part(part: Part) -> dict[str, Any]:
    match part:
        case TextPart(text=text):
            return {"type": "text", "content": text}
        case ImagePart(media_type=media_type, url=url):
            return {"type": "image", "media_type": media_type, "url": url or ""}
        case ToolUsePart(id=use_id, name=name, input=arguments):
            return {
                "type": "tool_call",
                "id": use_id,
                "name": name,
                "arguments": thaw_json(arguments),
            }
        case ToolResultPart(tool_use_id=use_id, content=content):
            return {"type": "tool_call_response", "id": use_id, "response": content}
    return {"type": type(part).__name__}


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def input_attributes(call: Call) -> dict[str, str]:
    messages = [{"role": m.role.value, "parts": [_part(p) for p in m.parts]} for m in call.messages]
    attributes = {INPUT_MESSAGES: _dump(messages)}
    if call.system:
        attributes[SYSTEM_INSTRUCTIONS] = _dump(
            [{"type": "text", "content": block.text} for block in call.system]
        )
    return attributes


def output_attributes(content: Iterable[Content]) -> dict[str, str]:
    parts = [_part(part) for part in content]
    return {OUTPUT_MESSAGES: _dump([{"role": "assistant", "parts": parts}])}
