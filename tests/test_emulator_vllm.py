"""The vLLM emulator: OpenAI-compatible chat through the ``openai`` SDK, plus ``/metrics``,
``/tokenize``, ``/health`` and vLLM's differences (PROVIDERS.md section 5)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from emulator_fixtures import get_text, metric, parse_prometheus, post_json

from skinflint.emulators import VLLMEmulator

MODEL = "emulated/llama-3-8b-instruct"


@pytest.fixture
async def emu() -> AsyncIterator[VLLMEmulator]:
    async with VLLMEmulator(model=MODEL, enable_prompt_tokens_details=True) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: VLLMEmulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=emu.base_url + "/v1", api_key="unused") as c:
        yield c


def chat(n: int, question: str = "What now?") -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": " ".join(["rule"] * n)},
        {"role": "user", "content": question},
    ]


async def scrape(emulator: VLLMEmulator) -> list[tuple[str, dict[str, str], float]]:
    status, text = await get_text(emulator.base_url + "/metrics")
    assert status == 200
    return parse_prometheus(text)


async def test_prefix_cache_reuses_full_16_token_blocks(client: openai.AsyncOpenAI) -> None:
    first = await client.chat.completions.create(model=MODEL, messages=chat(200))
    second = await client.chat.completions.create(model=MODEL, messages=chat(200, "Other?"))
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached > 200
    assert cached % 16 == 0
    assert cached < second.usage.prompt_tokens  # the last token is always recomputed


async def test_cached_tokens_only_with_the_flag() -> None:
    async with (
        VLLMEmulator(model=MODEL) as emulator,
        openai.AsyncOpenAI(base_url=emulator.base_url + "/v1", api_key="x") as client,
    ):
        for _ in range(2):
            response = await client.chat.completions.create(model=MODEL, messages=chat(100))
            assert response.usage.prompt_tokens_details is None
        samples = await scrape(emulator)
    assert metric(samples, "vllm:prefix_cache_hits_total") > 0  # cached all the same


async def test_metrics_reflect_load() -> None:
    async with (
        VLLMEmulator(model=MODEL, max_num_seqs=1, token_latency=0.05) as emulator,
        openai.AsyncOpenAI(base_url=emulator.base_url + "/v1", api_key="x") as client,
    ):

        async def one() -> None:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "count to ten please now"}],
                stream=True,
            )
            async for _ in stream:
                pass

        tasks = [asyncio.create_task(one()) for _ in range(3)]
        seen: tuple[float, float] = (0, 0)
        for _ in range(200):  # until the scheduler state is visible (no wall-clock asserts)
            samples = await scrape(emulator)
            seen = (
                metric(samples, "vllm:num_requests_running", model_name=MODEL),
                metric(samples, "vllm:num_requests_waiting", model_name=MODEL),
            )
            if seen == (1, 2):
                break
            await asyncio.sleep(0.005)
        assert seen == (1, 2)  # max_num_seqs=1: one runs, two wait
        assert 0 < metric(samples, "vllm:kv_cache_usage_perc") <= 1
        await asyncio.gather(*tasks)

        after = await scrape(emulator)
        assert metric(after, "vllm:num_requests_running") == 0
        assert metric(after, "vllm:num_requests_waiting") == 0
        assert metric(after, "vllm:kv_cache_usage_perc") == 0
        assert metric(after, "vllm:request_success_total", finished_reason="stop") == 3
        assert metric(after, "vllm:e2e_request_latency_seconds_count") == 3
        assert metric(after, "vllm:generation_tokens_total") > 0
        queries = metric(after, "vllm:prefix_cache_queries_total")
        hits = metric(after, "vllm:prefix_cache_hits_total")
        assert queries == metric(after, "vllm:prompt_tokens_total")
        assert 0 < hits < queries  # identical prompts: the later two hit full blocks

        emulator.simulate_waiting = 40
        emulator.simulate_kv_usage = 0.97
        saturated = await scrape(emulator)
        assert metric(saturated, "vllm:num_requests_waiting") == 40
        assert metric(saturated, "vllm:kv_cache_usage_perc") == pytest.approx(0.97)


async def test_metrics_exposition_format(emu: VLLMEmulator) -> None:
    status, text = await get_text(emu.base_url + "/metrics")
    assert status == 200
    assert "# TYPE vllm:num_requests_running gauge" in text
    assert "# TYPE vllm:prefix_cache_queries counter" in text
    for name, labels, _ in parse_prometheus(text):
        assert name.startswith("vllm:")
        assert labels["model_name"] == MODEL
        assert labels["engine"] == "0"


async def test_tokenize_health_version_models(
    emu: VLLMEmulator, client: openai.AsyncOpenAI
) -> None:
    status, _, text = await post_json(emu.base_url + "/tokenize", {"prompt": "Hello, world!"})
    assert status == 200
    result = json.loads(text)
    assert result["count"] == len(result["tokens"]) == 4
    assert result["max_model_len"] == emu.max_model_len

    messages = [{"role": "user", "content": "Hello"}]
    _, _, text = await post_json(emu.base_url + "/tokenize", {"model": MODEL, "messages": messages})
    response = await client.chat.completions.create(model=MODEL, messages=messages)
    assert json.loads(text)["count"] == response.usage.prompt_tokens

    assert await get_text(emu.base_url + "/health") == (200, "")
    status, text = await get_text(emu.base_url + "/version")
    assert status == 200
    assert "version" in json.loads(text)
    models = await client.models.list()
    assert [m.id for m in models.data] == [MODEL]


async def test_errors_use_integer_codes(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(
            model="other", messages=[{"role": "user", "content": "x"}]
        )
    assert isinstance(missing.value.body, dict)
    assert missing.value.body["code"] == 404
    assert missing.value.body["type"] == "NotFoundError"
    with pytest.raises(openai.BadRequestError) as too_long:
        await client.chat.completions.create(model=MODEL, messages=chat(9000))
    assert isinstance(too_long.value.body, dict)
    assert too_long.value.body["code"] == 400
    assert "maximum context length" in too_long.value.message


async def test_stream_usage_defaults_on_with_stream_options(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "hi there"}]
    with_options = await client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={}
    )
    chunks = [c async for c in with_options]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    without = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    assert all(c.usage is None for c in [c async for c in without])


async def test_no_auth_by_default_and_key_when_configured() -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    async with VLLMEmulator(model=MODEL) as open_server:
        status, _, _ = await post_json(open_server.base_url + "/v1/chat/completions", body)
        assert status == 200
    async with VLLMEmulator(model=MODEL, api_key="secret") as locked:
        url = locked.base_url + "/v1/chat/completions"
        status, _, text = await post_json(url, body)
        assert status == 401
        assert json.loads(text)["error"]["code"] == 401
        status, _, _ = await post_json(url, body, {"authorization": "Bearer secret"})
        assert status == 200
