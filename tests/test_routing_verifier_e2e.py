"""The ``verifier`` cascade check end to end: gRPC -> pipeline -> SDK -> emulator. The Anthropic
emulator answers ``"Echo: "`` + the prompt's first words, so a prompt that *contains* a
worked answer makes the cheap model answer with that text: one with an arithmetic slip is
escalated (route reason: verifier), the same answer with the arithmetic right is kept."""

from __future__ import annotations

from complete_fixtures import RigFactory, hand_cost, request, uncached

from skinflint.emulators.generation import reply_text
from skinflint.pipeline.verifier import AnswerVerifier
from skinflint.v1 import skinflint_pb2 as pb

#: The verifier on, with the shipped default threshold (no cascade_verifier_threshold).
VERIFIED = (
    "features:\n  qa: {cascade: true, router_threshold: 1.0, cascade_checks: [empty, verifier]}\n"
)
RIGHT = (
    "Tom washes his car 4 times a month at $15 a wash. He pays 4 * 15 = <<4*15=60>>60 a month "
    "and 60 * 12 = <<60*12=720>>720 a year. #### 720"
)
SLIP = RIGHT.replace("=720>>720", "=620>>620").replace("#### 720", "#### 620")
HAIKU, OPUS = "anthropic/claude-haiku-4-5", "anthropic/claude-opus-4-6"


def test_the_scripted_answers_straddle_the_default_threshold() -> None:
    """The premise of the tests below, on the very text the emulator will answer."""
    model = AnswerVerifier.load()
    right = model.score(RIGHT, reply_text(RIGHT)).probability
    slip = model.score(SLIP, reply_text(SLIP)).probability
    assert right <= model.default_threshold < slip


async def test_an_answer_with_an_arithmetic_slip_is_escalated(start_rig: RigFactory) -> None:
    rig = await start_rig(VERIFIED)
    response = await rig.stub.Complete(uncached(request("auto", SLIP)))
    served = response.served_by
    assert (served.model, served.tier, served.attempts) == ("claude-opus-4-6", pb.TIER_FRONTIER, 2)
    assert "failed check verifier (answer score " in served.route_reason
    assert f"> threshold {AnswerVerifier.load().default_threshold:.3f}, default" in (
        served.route_reason
    )
    assert "60*12 = 620 (recomputed 720)" in served.route_reason
    assert "cascade escalated to tier 'frontier'" in served.route_reason
    assert [e.body["model"] for e in rig.anthropic.requests] == [
        "claude-haiku-4-5",
        "claude-opus-4-6",
    ]
    # Both attempts are billed: the same prompt on each model, each with its own output.
    alone = await rig.stub.Complete(uncached(request(OPUS, SLIP)))
    cheap = await rig.stub.Complete(uncached(request(HAIKU, SLIP)))
    assert response.cost_nanousd == hand_cost(alone.usage, OPUS) + hand_cost(cheap.usage, HAIKU)


async def test_the_same_answer_with_the_arithmetic_right_is_kept(start_rig: RigFactory) -> None:
    rig = await start_rig(VERIFIED)
    response = await rig.stub.Complete(uncached(request("auto", RIGHT)))
    served = response.served_by
    assert (served.model, served.tier, served.attempts) == ("claude-haiku-4-5", pb.TIER_SMALL, 1)
    assert "cascade: the answer passed every check" in served.route_reason
    assert "(empty, verifier)" in served.route_reason
    assert len(rig.anthropic.requests) == 1


async def test_a_feature_threshold_overrides_the_default(start_rig: RigFactory) -> None:
    rig = await start_rig(
        "features:\n"
        "  qa: {cascade: true, router_threshold: 1.0, cascade_checks: [verifier],\n"
        "       cascade_verifier_threshold: 0.999}\n"
    )
    response = await rig.stub.Complete(uncached(request("auto", SLIP)))
    assert response.served_by.model == "claude-haiku-4-5"  # the slip scores below 0.999
    rig = await start_rig(
        "features:\n"
        "  qa: {cascade: true, router_threshold: 1.0, cascade_checks: [verifier],\n"
        "       cascade_verifier_threshold: 0.001}\n"
    )
    response = await rig.stub.Complete(uncached(request("auto", RIGHT)))
    assert response.served_by.model == "claude-opus-4-6"
    assert "threshold 0.001, features.qa.cascade_verifier_threshold" in (
        response.served_by.route_reason
    )


async def test_without_the_check_listed_a_slip_is_not_escalated(start_rig: RigFactory) -> None:
    rig = await start_rig("features:\n  qa: {cascade: true, router_threshold: 1.0}\n")
    response = await rig.stub.Complete(uncached(request("auto", SLIP)))
    assert response.served_by.model == "claude-haiku-4-5"  # the default checks do not include it
