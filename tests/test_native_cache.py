"""The LMDB response cache: TTL, size bound, eviction, threads, processes, kill -9, corruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from skinflint._native import CacheError, ResponseCache


def k(i: int) -> bytes:
    return i.to_bytes(16, "big")


def test_put_get_roundtrip_and_stats(tmp_path: Path) -> None:
    cache = ResponseCache(str(tmp_path / "c"))
    assert cache.get(k(1)) is None
    cache.put(k(1), b"hello", ttl_seconds=60)
    assert cache.get(k(1)) == b"hello"
    stats = cache.stats()
    assert stats.entries == 1
    assert stats.bytes >= len(b"hello")
    assert stats.hits == 1
    assert stats.misses == 1
    assert stats.max_bytes == 1 << 30
    assert stats.map_size > stats.max_bytes


def test_overwrite_keeps_accounting_exact(tmp_path: Path) -> None:
    cache = ResponseCache(str(tmp_path / "c"))
    cache.put(k(1), b"x" * 100, ttl_seconds=60)
    before = cache.stats().bytes
    cache.put(k(1), b"y" * 300, ttl_seconds=60)
    after = cache.stats()
    assert after.entries == 1
    assert after.bytes - before == 200
    assert cache.get(k(1)) == b"y" * 300
    assert cache.delete(k(1)) is True
    assert cache.delete(k(1)) is False
    assert cache.stats().entries == 0
    assert cache.stats().bytes == 0


def test_ttl_expiry_is_a_miss_and_purgeable(tmp_path: Path) -> None:
    cache = ResponseCache(str(tmp_path / "c"))
    cache.put(k(1), b"short", ttl_seconds=0.05)
    cache.put(k(2), b"long", ttl_seconds=3600)
    time.sleep(0.1)
    assert cache.get(k(1)) is None
    assert cache.get(k(2)) == b"long"
    assert cache.stats().expired >= 1
    assert cache.purge_expired() == 1
    assert cache.stats().entries == 1


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_bad_ttl_is_rejected(tmp_path: Path, ttl: float) -> None:
    cache = ResponseCache(str(tmp_path / "c"))
    with pytest.raises(ValueError, match="ttl_seconds"):
        cache.put(k(1), b"v", ttl_seconds=ttl)


def test_value_larger_than_bound_is_rejected(tmp_path: Path) -> None:
    cache = ResponseCache(str(tmp_path / "c"), max_bytes=1024)
    with pytest.raises(ValueError):
        cache.put(k(1), b"v" * 4096, ttl_seconds=60)


def test_size_bound_evicts_oldest_first(tmp_path: Path) -> None:
    cache = ResponseCache(str(tmp_path / "c"), max_bytes=64 * 1024)
    value = b"v" * 1024
    for i in range(200):
        cache.put(k(i), value, ttl_seconds=60)
    stats = cache.stats()
    assert stats.bytes <= 64 * 1024
    assert stats.evictions > 0
    assert stats.entries + stats.evictions == 200
    assert cache.get(k(0)) is None  # the oldest went first
    assert cache.get(k(199)) == value  # the newest stayed


def test_clear(tmp_path: Path) -> None:
    cache = ResponseCache(str(tmp_path / "c"))
    for i in range(10):
        cache.put(k(i), b"v", ttl_seconds=60)
    cache.clear()
    assert cache.stats().entries == 0
    assert cache.get(k(3)) is None


def test_two_handles_share_one_environment(tmp_path: Path) -> None:
    a = ResponseCache(str(tmp_path / "c"))
    b = ResponseCache(str(tmp_path / "c"))
    a.put(k(1), b"shared", ttl_seconds=60)
    assert b.get(k(1)) == b"shared"
    assert a.path == b.path


def test_unopenable_path_is_a_cache_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CacheError) as err:
        ResponseCache(str(blocker / "c"))
    assert str(blocker) in str(err.value)


def test_many_threads(tmp_path: Path) -> None:
    cache = ResponseCache(str(tmp_path / "c"))
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(300):
                key = k(t * 10_000 + i)
                cache.put(key, key * 8, ttl_seconds=60)
                assert cache.get(key) == key * 8
                cache.get(k(i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.stats().entries == 8 * 300


WRITER = textwrap.dedent(
    """
    import sys
    from skinflint._native import ResponseCache
    path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cache = ResponseCache(path)
    for i in range(count):
        key = (worker * 1_000_000 + i).to_bytes(16, "big")
        cache.put(key, b"w%d-%d" % (worker, i), ttl_seconds=600)
        print(i, flush=True)
    """
)


def test_several_processes_on_one_data_dir(tmp_path: Path) -> None:
    path = str(tmp_path / "c")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, str(w), "200"], stdout=subprocess.DEVNULL
        )
        for w in range(4)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    cache = ResponseCache(path)
    for w in range(4):
        for i in range(200):
            assert cache.get((w * 1_000_000 + i).to_bytes(16, "big")) == b"w%d-%d" % (w, i)
    assert cache.stats().entries == 800


def test_survives_kill_9_mid_write(tmp_path: Path) -> None:
    path = str(tmp_path / "c")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, path, "7", "1000000"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    done = 0
    for line in proc.stdout:
        done = int(line)
        if done >= 500:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    cache = ResponseCache(path)
    # Every put the writer reported as finished is there, intact.
    for i in range(done + 1):
        assert cache.get((7 * 1_000_000 + i).to_bytes(16, "big")) == b"w7-%d" % i
    # Puts that finished after the last line we read are there too, and the stored entry
    # count agrees exactly with what is readable: no torn accounting.
    extra = 0
    while cache.get((7 * 1_000_000 + done + 1 + extra).to_bytes(16, "big")) is not None:
        extra += 1
    assert cache.stats().entries == done + 1 + extra
    cache.put(k(1), b"after", ttl_seconds=60)
    assert cache.get(k(1)) == b"after"


CORRUPTOR = textwrap.dedent(
    """
    import sys, lmdb
    env = lmdb.open(sys.argv[1], max_dbs=16, subdir=True, lock=True)
    db = env.open_db(b"entries", create=False)
    with env.begin(write=True, db=db) as txn:
        keys = [bytes(key) for key, _ in txn.cursor()]
        txn.put(keys[0], b"\\x00garbage")
        txn.put(keys[1], b"")
    print(keys[0].hex(), keys[1].hex())
    """
)


def test_undecodable_value_is_a_miss_not_an_error(tmp_path: Path) -> None:
    # The `lmdb` package bundles another LMDB build whose lock format differs, so the two may
    # not hold the environment at the same time: write, corrupt and read in turn.
    path = str(tmp_path / "c")
    fill = (
        "from skinflint._native import ResponseCache\n"
        f"c = ResponseCache({path!r})\n"
        "for i in range(3):\n"
        "    c.put(i.to_bytes(16, 'big'), b'good value %d' % i, ttl_seconds=60)\n"
    )
    subprocess.run([sys.executable, "-c", fill], check=True)
    out = subprocess.run(
        [sys.executable, "-c", CORRUPTOR, path], check=True, capture_output=True, text=True
    ).stdout.split()
    broken = [bytes.fromhex(h) for h in out]
    cache = ResponseCache(path)
    for key in broken:
        assert cache.get(key) is None
    intact = next(k(i) for i in range(3) if k(i) not in broken)
    assert cache.get(intact) is not None
    assert cache.purge_expired() >= 2  # undecodable entries are cleaned up with the expired ones
    cache.put(broken[0], b"repaired", ttl_seconds=60)
    assert cache.get(broken[0]) == b"repaired"


def test_env_survives_os_level_reopen_in_new_process(tmp_path: Path) -> None:
    path = str(tmp_path / "c")
    ResponseCache(path, durable=True).put(k(5), b"durable", ttl_seconds=60)
    code = (
        "from skinflint._native import ResponseCache;"
        f"assert ResponseCache({path!r}).get((5).to_bytes(16, 'big')) == b'durable'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
