"""Run one emulator from the command line until interrupted, for example
``python -m skinflint.emulators anthropic --port 8801`` (``openai``, ``vllm`` likewise;
``vllm`` also takes ``--model`` and ``--prompt-tokens-details``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from skinflint.emulators.anthropic_api import AnthropicEmulator
from skinflint.emulators.common import Emulator
from skinflint.emulators.openai_api import OpenAIEmulator
from skinflint.emulators.vllm_api import VLLMEmulator


def build(args: argparse.Namespace) -> Emulator:
    if args.provider == "anthropic":
        return AnthropicEmulator(latency=args.latency)
    if args.provider == "openai":
        return OpenAIEmulator(latency=args.latency)
    return VLLMEmulator(
        model=args.model,
        latency=args.latency,
        enable_prompt_tokens_details=args.prompt_tokens_details,
    )


async def serve(args: argparse.Namespace) -> None:
    emulator = build(args)
    await emulator.start(args.host, args.port)
    sys.stdout.write(f"{args.provider} emulator listening on {emulator.base_url}\n")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m skinflint.emulators")
    parser.add_argument("provider", choices=["anthropic", "openai", "vllm"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--model", default="emulated/llama-3-8b-instruct", help="vLLM model")
    parser.add_argument("--prompt-tokens-details", action="store_true", help="vLLM cached_tokens")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
