"""Benchmark the latency skinflint adds in front of a provider (response cache off).

The same chat request is sent, with the same load generator, three ways:

- ``direct``: the OpenAI SDK (``AsyncOpenAI``, ``max_retries=0``) straight to the OpenAI
  emulator (``openai/gpt-4o-mini``, no simulated latency);
- ``skinflint``: the gRPC stub's ``Complete`` to a ``skinflint serve`` process whose ``openai``
  provider points at that same emulator (``policy.no_lookup`` + ``no_store``: no response
  cache);
- ``echo``: a bare grpc.aio echo server (a generic handler, no servicer code) that answers a
  serialized CompleteRequest with a canned CompleteResponse of the real size: the cost of the
  extra gRPC hop itself.

Emulator, sidecar and echo server each run in their own process; the load generator is
``--clients`` spawned processes, each an asyncio loop keeping its share of the in-flight
requests busy, timing every request with ``perf_counter_ns`` (warm-up excluded). For each
concurrency (1 = sequential, then 16 and 64 by default) it reports p50/p99 per path, the
latency skinflint adds (skinflint - direct) and the overhead beyond the bare hop
(skinflint - direct - echo). Differences are taken between percentiles of separate runs, not
per request. CPU use of every process over the measured window is shown too, so a saturated
load generator (client CPU near 100% of one core per process) is visible.

Run: ``python bench/overhead.py`` (needs the dev extras: ``pip install '.[dev]'``); about two
minutes with the defaults. ``--profile out.prof`` profiles the sidecar (cProfile, measured part
only) and prints where its time goes per call. Only loopback addresses are used. Figures are
printed, never asserted; copy them into bench/RESULTS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import datetime
import json
import multiprocessing as mp
import os
import platform
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

from skinflint.v1 import skinflint_pb2 as pb
from skinflint.v1 import skinflint_pb2_grpc as pb_grpc

HOST = "127.0.0.1"
MODEL = "gpt-4o-mini"
KEY_ENV = "SKINFLINT_BENCH_OPENAI_KEY"
API_KEY = "sk-bench-overhead"
SYSTEM = "You are a concise assistant. Answer in one short sentence."
QUESTION = "What is the capital of France?"
MAX_TOKENS = 64
FEATURE = "qa"
#: Same shape as the key skinflint's prompt-cache planner sends (``sf:<feature>:<16 hex>``).
CACHE_KEY = f"sf:{FEATURE}:0123456789abcdef"
ECHO_METHOD = "/skinflint.bench.Echo/Echo"
CALL_TIMEOUT_S = 30.0
PATHS = ("direct", "skinflint", "echo")
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: How long a server may take to start (a loaded machine imports slowly; workers spawn).
READY_S = 120.0


def complete_request() -> pb.CompleteRequest:
    return pb.CompleteRequest(
        model=f"openai/{MODEL}",
        system=[pb.SystemBlock(text=SYSTEM)],
        messages=[
            pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=pb.TextPart(text=QUESTION))])
        ],
        params=pb.GenerationParams(max_tokens=MAX_TOKENS, temperature=0.0),
        attribution=pb.Attribution(tenant="acme", team="search", feature=FEATURE),
        policy=pb.Policy(no_lookup=True, no_store=True),
    )


def sdk_kwargs() -> dict[str, Any]:
    """What skinflint's OpenAI adapter sends for ``complete_request()``."""
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        ],
        "max_completion_tokens": MAX_TOKENS,
        "temperature": 0.0,
        "prompt_cache_key": CACHE_KEY,
    }


# --- servers ---------------------------------------------------------------------------------


def echo_server_main(conn: Connection, response: bytes) -> None:
    """A bare grpc.aio server answering every Echo call with ``response`` (bytes in, out)."""

    async def run() -> None:
        async def echo(_request: bytes, _context: Any) -> bytes:
            return response

        handler = grpc.method_handlers_generic_handler(
            "skinflint.bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port(f"{HOST}:0")
        await server.start()
        conn.send(port)
        await server.wait_for_termination()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def wait_for_line(path: Path, pattern: re.Pattern[str], proc: subprocess.Popen[Any]) -> str:
    """The first line of ``path`` matching ``pattern``, waiting up to ``READY_S`` for it."""
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if pattern.search(line):
                    return line
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited early:\n{path.read_text()}")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args} did not become ready:\n{path.read_text()}")


def start_emulator(tmp: Path) -> tuple[subprocess.Popen[Any], str]:
    log = tmp / "emulator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "skinflint.emulators", "openai", "--host", HOST, "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        line = wait_for_line(log, re.compile(r"listening on (http://\S+)"), proc)
    except BaseException:
        stop_process(proc)
        raise
    match = re.search(r"listening on (http://\S+)", line)
    assert match is not None
    return proc, match[1]


def start_sidecar(
    tmp: Path, emulator_url: str, profile: str | None, workers: int = 1
) -> tuple[subprocess.Popen[Any], int]:
    config = tmp / "skinflint.yaml"
    config.write_text(
        "providers:\n"
        f"  openai: {{base_url: '{emulator_url}/v1', api_key_env: {KEY_ENV}}}\n"
        "server:\n"
        "  grace_seconds: 1\n" + (f"  workers: {workers}\n" if workers != 1 else "")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKINFLINT")}
    env[KEY_ENV] = API_KEY
    command = [sys.executable]
    if profile:
        command += [str(Path(__file__).with_name("_profiled_sidecar.py")), profile]
    else:
        command += ["-m", "skinflint"]
    command += ["serve", "--host", HOST, "--port", "0"]
    command += ["--data-dir", str(tmp / "data"), "--config", str(config)]
    log = tmp / "sidecar.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    listening = re.compile(r'"event": ?"listening"')
    try:
        line = wait_for_line(log, listening, proc)
        deadline = time.monotonic() + READY_S
        while sum(map(bool, map(listening.search, log.read_text().splitlines()))) < workers:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"not every worker started:\n{log.read_text()}")
            time.sleep(0.05)
    except BaseException:
        stop_process(proc)  # not yet in the caller's list of processes to stop
        raise
    return proc, int(json.loads(line)["port"])


def stop_process(proc: subprocess.Popen[Any] | mp.process.BaseProcess) -> None:
    """SIGTERM the process this benchmark started (by its pid), then SIGKILL after 15 s."""
    if isinstance(proc, subprocess.Popen):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    elif proc.is_alive():
        proc.terminate()
        proc.join(15)
        if proc.is_alive():
            proc.kill()
            proc.join()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) and of its live child processes
    (``server.workers`` > 1: the supervisor's workers) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / CLK_TCK
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                total += cpu_seconds(int(child))
    return total


# --- load generator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    emulator_url: str
    sidecar: str
    echo: str


Call = Callable[[], Awaitable[object]]


def make_calls(targets: Targets) -> dict[str, Call]:
    """One client per path, created in the worker's loop and reused (warm connections)."""
    import openai

    sdk = openai.AsyncOpenAI(
        base_url=f"{targets.emulator_url}/v1",
        api_key=API_KEY,
        max_retries=0,
        timeout=CALL_TIMEOUT_S,
    )
    kwargs = sdk_kwargs()
    sidecar = pb_grpc.SkinflintStub(grpc.aio.insecure_channel(targets.sidecar))
    echo = grpc.aio.insecure_channel(targets.echo).unary_unary(
        ECHO_METHOD,
        request_serializer=pb.CompleteRequest.SerializeToString,
        response_deserializer=pb.CompleteResponse.FromString,
    )
    request = complete_request()

    async def direct() -> object:
        return await sdk.chat.completions.create(**kwargs)

    async def through() -> object:
        return await sidecar.Complete(request, timeout=CALL_TIMEOUT_S)

    async def bare() -> object:
        return await echo(request, timeout=CALL_TIMEOUT_S)

    return {"direct": direct, "skinflint": through, "echo": bare}


async def drive(call: Call, inflight: int, count: int) -> array.array[int]:
    """``count`` calls with ``inflight`` of them outstanding; each one's latency in ns."""
    latencies: array.array[int] = array.array("q")
    remaining = count
    clock = time.perf_counter_ns

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = clock()
            await call()
            latencies.append(clock() - start)

    await asyncio.gather(*(lane() for _ in range(inflight)))
    return latencies


def client_main(conn: Connection, targets: Targets) -> None:
    """A load-generator process: ``warm`` then ``go`` commands from the parent, per run."""

    async def run() -> None:
        calls = make_calls(targets)
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command[0] == "stop":
                return
            _, path, inflight, warmup, count = command
            await drive(calls[path], inflight, warmup)
            conn.send("warm")
            await loop.run_in_executor(None, conn.recv)  # "go": every client is warm
            cpu0, wall0 = time.process_time(), time.perf_counter()
            latencies = await drive(calls[path], inflight, count)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            conn.send((latencies.tobytes(), cpu, wall))

    asyncio.run(run())


@dataclass
class Result:
    path: str
    concurrency: int
    latencies: list[int]  # ns, sorted
    wall_s: float
    client_cpu: list[float]  # seconds per client process
    server_cpu: dict[str, float]  # seconds per server process

    def pct(self, q: float) -> float:
        return self.latencies[min(len(self.latencies) - 1, int(len(self.latencies) * q))] / 1e6

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall_s


class LoadGenerator:
    def __init__(self, clients: int, targets: Targets, servers: dict[str, int]) -> None:
        ctx = mp.get_context("spawn")
        self.servers = servers
        self.conns: list[Connection] = []
        self.procs: list[mp.process.BaseProcess] = []
        for _ in range(clients):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_main, args=(child, targets), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def run(self, path: str, concurrency: int, count: int, warmup: int) -> Result:
        workers = min(concurrency, len(self.conns))
        shares = split(concurrency, workers)
        conns = self.conns[:workers]
        requests = [count * inflight // concurrency for inflight in shares]
        requests[0] += count - sum(requests)
        for conn, inflight, share in zip(conns, shares, requests, strict=True):
            conn.send(("run", path, inflight, max(warmup * inflight // concurrency, 1), share))
        for conn in conns:
            assert conn.recv() == "warm"
        before = {name: cpu_seconds(pid) for name, pid in self.servers.items()}
        for conn in conns:
            conn.send("go")
        replies = [conn.recv() for conn in conns]
        after = {name: cpu_seconds(pid) for name, pid in self.servers.items()}
        latencies: array.array[int] = array.array("q")
        for raw, _cpu, _wall in replies:
            latencies.frombytes(raw)
        return Result(
            path=path,
            concurrency=concurrency,
            latencies=sorted(latencies),
            wall_s=max(wall for _raw, _cpu, wall in replies),
            client_cpu=[cpu for _raw, cpu, _wall in replies],
            server_cpu={name: after[name] - before[name] for name in before},
        )

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc in self.procs:
            proc.join(10)
            stop_process(proc)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def merge(parts: list[Result]) -> Result:
    """Rounds of one path and level as one result (walls and CPU times add up)."""
    first = parts[0]
    return Result(
        path=first.path,
        concurrency=first.concurrency,
        latencies=sorted(x for part in parts for x in part.latencies),
        wall_s=sum(part.wall_s for part in parts),
        client_cpu=[sum(cpus) for cpus in zip(*(part.client_cpu for part in parts), strict=True)],
        server_cpu={
            name: sum(part.server_cpu[name] for part in parts) for name in first.server_cpu
        },
    )


# --- report ------------------------------------------------------------------------------------


def machine_facts(load_start: tuple[float, ...]) -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import openai

    return [
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}",
        f"- Python {platform.python_version()}, grpcio {grpc.__version__}, "
        f"openai {openai.__version__}, {platform.system()} {platform.release()}",
        f"- load average (1 min) at start / end: {load_start[0]:.2f} / {os.getloadavg()[0]:.2f}"
        " (anything else running competes for the same cores)",
    ]


def percent(seconds: float, wall: float) -> str:
    return f"{100 * seconds / wall:.0f}%"


def path_row(r: Result) -> str:
    clients = ", ".join(percent(c, r.wall_s) for c in r.client_cpu)
    per_request = {
        name: 1000 * cpu / len(r.latencies) for name, cpu in r.server_cpu.items() if cpu > 0
    }
    servers = ", ".join(
        f"{name} {percent(cpu, r.wall_s)} ({per_request[name]:.2f} ms/req)"
        for name, cpu in r.server_cpu.items()
        if cpu > 0
    )
    return (
        f"| {r.concurrency} | {r.path} | {len(r.latencies)} | {r.pct(0.5):.2f} | "
        f"{r.pct(0.99):.2f} | {r.rate:.0f} | {clients} | {servers or '-'} |"
    )


def summary_row(concurrency: int, by_path: dict[str, Result]) -> str:
    d, s, e = by_path["direct"], by_path["skinflint"], by_path["echo"]
    added = [s.pct(q) - d.pct(q) for q in (0.5, 0.99)]
    beyond = [added[i] - e.pct(q) for i, q in enumerate((0.5, 0.99))]
    return (
        f"| {concurrency} | {d.pct(0.5):.2f} / {d.pct(0.99):.2f} | "
        f"{s.pct(0.5):.2f} / {s.pct(0.99):.2f} | {e.pct(0.5):.2f} / {e.pct(0.99):.2f} | "
        f"{added[0]:+.2f} / {added[1]:+.2f} | {beyond[0]:+.2f} / {beyond[1]:+.2f} |"
    )


def bucket(filename: str) -> str:
    """Where a profiled function lives: a package, a skinflint module, or a builtin."""
    if "/skinflint/" in filename:
        return "skinflint." + filename.rsplit("/skinflint/", 1)[1].removesuffix(".py").replace(
            "/", "."
        )
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if filename.startswith("~"):
        return "builtins/C"
    return "stdlib." + Path(filename).stem


def print_profile(path: str, limit: int = 20) -> None:
    """The sidecar's own time (cProfile ``tottime``, idle ``epoll`` left out) per Complete
    call, by package, then the top functions. cProfile inflates Python-heavy code, so read the
    shares, not the absolute figures."""
    stats = pstats.Stats(path)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    calls = sum(v[1] for k, v in raw.items() if k[2] == "to_call") or 1
    by_bucket: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        if "poll' of 'select.epoll" in name:
            continue
        where = bucket(filename) if filename != "~" else builtin_bucket(name)
        by_bucket[where] = by_bucket.get(where, 0.0) + tottime
    total = sum(by_bucket.values())
    print(f"\n### sidecar profile: own time per Complete call ({calls} calls, cProfile)\n")
    groups: dict[str, float] = {}
    for where, seconds in by_bucket.items():
        groups[group(where)] = groups.get(group(where), 0.0) + seconds
    print("| part | ms per call | share |")
    print("|---|---|---|")
    for part, seconds in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"| {part} | {1000 * seconds / calls:.3f} | {100 * seconds / total:.1f}% |")
    print()
    print("| where | ms per call | share |")
    print("|---|---|---|")
    for where, seconds in sorted(by_bucket.items(), key=lambda kv: -kv[1])[:limit]:
        print(f"| {where} | {1000 * seconds / calls:.3f} | {100 * seconds / total:.1f}% |")
    print(f"| total | {1000 * total / calls:.3f} | 100% |")
    print(f"\n```\n{limit} functions by cumulative time:")
    sys.stdout.flush()
    stats.stream = sys.stdout  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(limit)
    print("```")


_SDK = {"openai", "httpx2", "httpcore2", "h11", "anyio", "sniffio", "pydantic", "pydantic_core"}
_SDK_C = ("C: _socket", "C: pydantic_core")
_LOOP = ("stdlib.base_events", "stdlib.events", "stdlib.tasks", "stdlib.futures", "stdlib.selector")


def group(where: str) -> str:
    if where.startswith(("skinflint.", "C: skinflint")):
        return "skinflint's own code (incl. _native)"
    if where in _SDK or where.startswith(_SDK_C) or where in ("stdlib.typing", "typing_extensions"):
        return "provider SDK stack (openai, httpx2/httpcore2/h11, anyio, pydantic, typing)"
    if where.startswith(_LOOP) or where.startswith("C: _contextvars"):
        return "asyncio event loop (incl. callbacks run via Context.run)"
    return "other (stdlib, builtins, grpc's Python side, structlog)"


def builtin_bucket(name: str) -> str:
    """Builtins named after their module: ``<method 'poll' of 'select.epoll' objects>``."""
    match = re.search(r"of '([\w.]+)", name) or re.search(r"method ([\w.]+)\.\w+>", name)
    return f"C: {match[1]}" if match else "C: builtins"


# --- main --------------------------------------------------------------------------------------


@contextlib.contextmanager
def rig(
    tmp: Path, profile: str | None, workers: int = 1
) -> Iterator[tuple[Targets, dict[str, int]]]:
    started: list[subprocess.Popen[Any] | mp.process.BaseProcess] = []
    try:
        emulator, emulator_url = start_emulator(tmp)
        started.append(emulator)
        sidecar, sidecar_port = start_sidecar(tmp, emulator_url, profile, workers)
        started.append(sidecar)
        sidecar_target = f"{HOST}:{sidecar_port}"
        response = asyncio.run(probe(emulator_url, sidecar_target))
        parent, child = mp.get_context("spawn").Pipe()
        echo = mp.get_context("spawn").Process(
            target=echo_server_main, args=(child, response), daemon=True
        )
        echo.start()
        started.append(echo)
        if not parent.poll(30):
            raise RuntimeError("the echo server did not start")
        targets = Targets(emulator_url, sidecar_target, f"{HOST}:{parent.recv()}")
        assert echo.pid is not None
        yield targets, {"sidecar": sidecar.pid, "emulator": emulator.pid, "echo": echo.pid}
    finally:
        for proc in reversed(started):
            stop_process(proc)


def dump_profile(pid: int, path: str) -> None:
    """Have the profiled sidecar write its profile and wait (up to 30 s) for the file."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # let the write finish


async def probe(emulator_url: str, sidecar: str) -> bytes:
    """One call each way (both must succeed); the sidecar's answer, serialized, for the echo."""
    import openai

    async with openai.AsyncOpenAI(
        base_url=f"{emulator_url}/v1", api_key=API_KEY, max_retries=0
    ) as sdk:
        direct = await sdk.chat.completions.create(**sdk_kwargs())
    async with grpc.aio.insecure_channel(sidecar) as channel:
        answer = await pb_grpc.SkinflintStub(channel).Complete(
            complete_request(), timeout=CALL_TIMEOUT_S
        )
    through = "".join(part.text.text for part in answer.content)
    if through != direct.choices[0].message.content:
        raise RuntimeError("the sidecar's answer differs from the direct one")
    if answer.served_by.cache_status not in (pb.CACHE_STATUS_UNSPECIFIED, pb.CACHE_STATUS_BYPASS):
        raise RuntimeError(f"response cache not bypassed: {answer.served_by.cache_status}")
    return answer.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1500, help="measured requests per path and level")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    parser.add_argument(
        "-c", "--concurrency", type=int, nargs="+", default=[1, 16, 64], help="in-flight levels"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=max(2, min(4, len(os.sched_getaffinity(0)))),
        help="load-generator processes (a level below this uses fewer)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="paths alternate this many times per level (spreads drift over all paths)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="profile the sidecar (cProfile) over the measured runs; prints where its time goes",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="the sidecar's server.workers (processes)"
    )
    opts = parser.parse_args()

    load_start = os.getloadavg()
    began = time.perf_counter()
    results: dict[int, dict[str, Result]] = {}
    with tempfile.TemporaryDirectory(prefix="skinflint-bench-") as tmp:
        with rig(Path(tmp), opts.profile, opts.workers) as (targets, servers):
            load = LoadGenerator(opts.clients, targets, servers)
            if opts.profile:
                os.kill(servers["sidecar"], signal.SIGUSR1)
            try:
                for concurrency in opts.concurrency:
                    rounds = [
                        {path: load.run(path, concurrency, share, opts.warmup) for path in PATHS}
                        for share in split(opts.n, opts.rounds)
                    ]
                    results[concurrency] = {
                        path: merge([r[path] for r in rounds]) for path in PATHS
                    }
            finally:
                load.close()
                if opts.profile:
                    dump_profile(servers["sidecar"], opts.profile)
        elapsed = time.perf_counter() - began

    print("## skinflint overhead (bench/overhead.py)\n")
    print("\n".join(machine_facts(load_start)))
    print(
        f"- emulator: OpenAI `{MODEL}`, no simulated latency; {opts.clients} client processes; "
        f"sidecar server.workers {opts.workers}; "
        f"{opts.n} measured + {opts.warmup} warm-up requests per path and level; "
        f"run took {elapsed:.0f} s\n"
    )
    print(
        "| in flight | direct p50 / p99 ms | skinflint p50 / p99 ms | echo p50 / p99 ms "
        "| added (skinflint - direct) ms | beyond echo (added - echo) ms |"
    )
    print("|---|---|---|---|---|---|")
    for concurrency, by_path in results.items():
        print(summary_row(concurrency, by_path))
    print(
        "\n| in flight | path | requests | p50 ms | p99 ms | req/s | client CPU (per process) "
        "| server CPU (share of one core, CPU per request) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for by_path in results.values():
        for result in by_path.values():
            print(path_row(result))
    if opts.profile:
        print_profile(opts.profile)


if __name__ == "__main__":
    main()
