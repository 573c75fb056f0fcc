"""A real sidecar in front of the provider emulators, for the Complete-path tests.

``start_rig`` boots the Anthropic, OpenAI and vLLM emulators on port 0, writes a sidecar config
whose provider base URLs point at them, puts the keys in the environment (monkeypatch) and
starts the gRPC server, reached through a real channel. Imported by ``tests/test_complete_*``,
each wrapping ``open_rigs`` in its own ``start_rig`` fixture.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from skinflint.accounting import Usage, default_price_table
from skinflint.app import App
from skinflint.emulators import AnthropicEmulator, OpenAIEmulator, VLLMEmulator
from skinflint.server import create_server
from skinflint.v1 import skinflint_pb2 as pb
from skinflint.v1 import skinflint_pb2_grpc as pb_grpc

ANTHROPIC_KEY = "sk-ant-complete-test"
OPENAI_KEY = "sk-openai-complete-test"
VLLM_MODEL = "emulated/llama-3-8b-instruct"


@dataclass
class Rig:
    app: App
    stub: pb_grpc.SkinflintStub
    channel: grpc.aio.Channel
    anthropic: AnthropicEmulator
    openai: OpenAIEmulator
    vllm: VLLMEmulator


RigFactory = Callable[..., Awaitable[Rig]]


def rig_yaml(
    anthropic: str, openai: str, vllm: str, extra: str = "", anthropic_settings: str = ""
) -> str:
    """The sidecar config; ``anthropic_settings`` adds keys to the anthropic provider entry
    (", max_concurrency: 1") and ``extra`` is appended (it continues the dispatch section)."""
    return (
        "providers:\n"
        f"  anthropic: {{base_url: '{anthropic}'{anthropic_settings}}}\n"
        f"  openai: {{base_url: '{openai}/v1'}}\n"
        f"  vllm: {{base_url: '{vllm}/v1'}}\n"
        "tiers:\n"
        f"  local: ['vllm/{VLLM_MODEL}']\n"
        "dispatch:\n"
        "  backoff_initial_s: 0.01\n"
        "  backoff_max_s: 0.05\n" + extra
    )


@contextlib.asynccontextmanager
async def open_rigs(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RigFactory]:
    """Start emulators and a sidecar; ``extra`` YAML is appended to the config (it may add
    top-level sections the base config does not set, e.g. ``features`` or ``prompt_cache``).
    Test modules wrap it in a ``start_rig`` fixture."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            extra: str = "", *, anthropic_settings: str = "", **emulator_kwargs: Any
        ) -> Rig:
            anthropic = await stack.enter_async_context(
                AnthropicEmulator(**emulator_kwargs.get("anthropic", {}))
            )
            openai = await stack.enter_async_context(
                OpenAIEmulator(**emulator_kwargs.get("openai", {}))
            )
            vllm = await stack.enter_async_context(VLLMEmulator(model=VLLM_MODEL))
            yaml_text = rig_yaml(
                anthropic.base_url, openai.base_url, vllm.base_url, extra, anthropic_settings
            )
            app = App.open(make_settings(yaml_text))
            stack.push_async_callback(app.aclose)
            server, port = await create_server(app)
            await server.start()
            stack.push_async_callback(server.stop, None)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            stack.push_async_callback(channel.close)
            return Rig(app, pb_grpc.SkinflintStub(channel), channel, anthropic, openai, vllm)

        yield start


@pytest.fixture
async def start_rig(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RigFactory]:
    """A sidecar rig factory for one test (import it into the test module to use it)."""
    async with open_rigs(make_settings, monkeypatch) as start:
        yield start


def uncached(req: pb.CompleteRequest) -> pb.CompleteRequest:
    """``req`` with the response cache off both ways (lookup and store)."""
    req.policy.no_lookup = True
    req.policy.no_store = True
    return req


def request(model: str, text: str = "What is the capital of France?", **fields: Any) -> Any:
    """A small valid CompleteRequest for ``model``; keyword arguments set top-level fields."""
    req = pb.CompleteRequest(
        model=model,
        messages=[
            pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=pb.TextPart(text=text))])
        ],
        params=pb.GenerationParams(max_tokens=64, temperature=0.0),
        attribution=pb.Attribution(tenant="acme", team="search", feature="qa"),
    )
    for name, value in fields.items():
        if isinstance(value, list):
            req.ClearField(name)
            getattr(req, name).extend(value)
        elif hasattr(value, "DESCRIPTOR"):
            getattr(req, name).CopyFrom(value)
        else:
            setattr(req, name, value)
    return req


def domain_usage(usage: pb.Usage) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_5m_tokens=usage.cache_write_5m_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def hand_cost(usage: pb.Usage, qualified: str) -> int:
    """The cost computed by hand from the price entry: sum(tokens x rate) / 1e6, half up."""
    price = default_price_table().lookup(None, qualified)
    exact = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_5m_tokens * price.cache_write_5m
        + usage.cache_write_1h_tokens * price.cache_write_1h
    )
    return (2 * exact + 1_000_000) // 2_000_000


def hand_baseline(usage: pb.Usage, baseline: str = "anthropic/claude-opus-4-6") -> int:
    price = default_price_table().lookup(None, baseline)
    prompt = (
        usage.input_tokens
        + usage.cache_read_tokens
        + usage.cache_write_5m_tokens
        + usage.cache_write_1h_tokens
    )
    exact = prompt * price.input + usage.output_tokens * price.output
    return (2 * exact + 1_000_000) // 2_000_000
