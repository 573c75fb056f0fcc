"""Local emulators of the paid providers' HTTP APIs (Anthropic, OpenAI, vLLM).

Real aiohttp servers following the documented wire formats (``shared/PROVIDERS.md``), used by
the tests through the official SDKs and by ``skinflint demo`` to run without keys::

    async with AnthropicEmulator(clock=ManualClock()) as emu:
        client = anthropic.AsyncAnthropic(base_url=emu.base_url, api_key="sk-test")
        emu.faults.add(Fault(status=529, retry_after_ms=10))  # next call: overloaded once

Modules: ``common`` (server, clock, tokenizers, faults, request log), ``generation``
(deterministic replies), ``anthropic_request``/``anthropic_cache``/``anthropic_api``
(Messages API and prompt caching), ``openai_request``/``openai_cache``/``openai_api`` (Chat
Completions and automatic prefix caching), ``vllm_api`` (vLLM server, metrics). Command line:
``python -m skinflint.emulators {anthropic,openai,vllm} --port N``.
"""

from skinflint.emulators.anthropic_api import AnthropicEmulator
from skinflint.emulators.anthropic_request import ModelSpec
from skinflint.emulators.common import (
    Emulator,
    EmulatorError,
    EmulatorServer,
    Fault,
    FaultQueue,
    LoggedRequest,
    ManualClock,
    RequestLog,
    SystemClock,
)
from skinflint.emulators.openai_api import OpenAIEmulator
from skinflint.emulators.openai_request import ModelInfo
from skinflint.emulators.vllm_api import VLLMEmulator

__all__ = [
    "AnthropicEmulator",
    "Emulator",
    "EmulatorError",
    "EmulatorServer",
    "Fault",
    "FaultQueue",
    "LoggedRequest",
    "ManualClock",
    "ModelInfo",
    "ModelSpec",
    "OpenAIEmulator",
    "RequestLog",
    "SystemClock",
    "VLLMEmulator",
]
