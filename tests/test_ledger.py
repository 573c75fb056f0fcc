"""The spend ledger: records round-trip, History answers from hand cases, retention, and a
``kill -9`` of a writing process loses no acknowledged record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ledger_fixtures import NOW, NOW_MS, rec

from skinflint import _native
from skinflint.app import App
from skinflint.call import Tier
from skinflint.config import Settings
from skinflint.ledger import Ledger
from skinflint.ledger.queries import nearest_rank
from skinflint.ledger.record import COLUMNS
from skinflint.pipeline.history import History, OutputStats

DAY_MS = 86_400_000


def open_ledger(tmp_path: Path, retention_days: int = 90) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite3", retention_days=retention_days, clock=NOW.timestamp)


def test_records_round_trip_after_flush(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as ledger:
        written = [rec(i, stream=i % 2 == 0, tier=None if i == 3 else "small") for i in range(5)]
        for r in written:
            ledger.append(r)
        assert ledger.flush(timeout_s=30)
        assert sorted(ledger.records(), key=lambda r: r.request_id) == written
    # Reopened: still there.
    with open_ledger(tmp_path) as ledger:
        assert len(ledger.records()) == 5


def test_records_appended_close_together_share_one_commit(tmp_path: Path) -> None:
    """The writer lingers after the first record (``LINGER_S``), so a burst is one
    transaction, not one per answer."""
    with open_ledger(tmp_path) as ledger:
        started = time.monotonic()
        for i in range(10):  # answers 1 ms apart: the writer wakes between any two of them
            ledger.append(rec(i))
            time.sleep(0.001)
        spread = time.monotonic() - started
        assert ledger.flush(timeout_s=30)
        assert len(ledger.records()) == 10
        commits = ledger.commits
    # One commit per 50 ms linger the burst spans (plus one where the writer woke); without
    # the linger it would be one per answer.
    assert 1 <= commits <= 2 + int(spread / 0.05), (commits, spread)


@pytest.mark.parametrize(("max_batch", "rows_per_insert"), [(1, 1), (10, 3), (1024, 256)])
def test_a_batch_of_any_size_is_written_whole(
    tmp_path: Path, max_batch: int, rows_per_insert: int
) -> None:
    """The core's appender writes batches as multi-row INSERTs (one statement when they fit,
    else several in one transaction, the last one short): every record lands once, field
    for field, in the ledger's schema."""
    expected = [rec(i, input_tokens=i, tier=None if i % 5 == 0 else "mid") for i in range(48)]
    with open_ledger(tmp_path) as ledger:
        appender = _native.RowAppender(
            str(ledger.path),
            "calls",
            list(COLUMNS),
            linger_s=0.01,
            max_batch=max_batch,
            rows_per_insert=rows_per_insert,
        )
        for record in expected:
            assert appender.append(record) == 0
        assert appender.flush(timeout_s=30)
        assert (appender.appended, appender.processed, appender.failed) == (48, 48, 0)
        assert appender.commits >= -(-48 // max_batch)
        appender.close()
        kept = sorted(ledger.records(), key=lambda r: int(r.request_id[1:]))
    assert kept == expected


def test_a_refused_batch_is_logged_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record SQLite refuses (here: a NULL in a NOT NULL column) is dropped and logged
    with the reason; the caller, whose answer was already given, never sees an error."""
    with open_ledger(tmp_path) as ledger:
        ledger.append(rec(1))
        ledger.append(rec(2, team=None))  # type: ignore[arg-type]
        assert ledger.flush(timeout_s=30)
        ledger.append(rec(3))
        assert ledger.flush(timeout_s=30)
        kept = {r.request_id for r in ledger.records()}
    # The bad record's batch is lost (the records queued with it too): never a half write.
    assert "r3" in kept and "r2" not in kept
    out = capsys.readouterr()
    assert "ledger_write_failed" in out.out + out.err
    assert "NOT NULL" in out.out + out.err


def test_rows_of_the_wrong_shape_or_type_are_refused_at_append(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as ledger:
        appender = _native.RowAppender(str(ledger.path), "calls", list(COLUMNS), linger_s=0)
        with pytest.raises(ValueError, match="3 values"):
            appender.append((1, 2, 3))
        with pytest.raises(TypeError, match=r"row\[1\]: a bytes"):
            appender.append((1, b"x", *rec(0)[2:]))
        with pytest.raises(ValueError, match=r"row\[0\].*64-bit"):
            appender.append((1 << 64, *rec(0)[1:]))
        with pytest.raises(ValueError, match="identifier"):
            _native.RowAppender(str(ledger.path), "calls; --", list(COLUMNS), linger_s=0)
        with pytest.raises(ValueError, match="linger_s"):
            _native.RowAppender(str(ledger.path), "calls", list(COLUMNS), linger_s=-1)
        appender.close()
        with pytest.raises(ValueError, match="closed"):
            appender.append(rec(0))


def test_ledger_is_a_history(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as ledger:
        history: History = ledger
        assert history.output_tokens("qa") is None
        assert history.workload(7, now=NOW) is None


def test_output_tokens_are_nearest_rank_over_provider_calls_only(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as ledger:
        for i, out in enumerate([5, 1, 9, 3, 7, 2, 8, 4, 6, 10]):
            ledger.append(rec(i, output_tokens=out))
        # Hits replay another call's output: not part of the distribution.
        ledger.append(rec(100, output_tokens=1000, cache_status="exact"))
        ledger.append(rec(101, output_tokens=50, feature="other"))
        ledger.flush()
        # 1..10: p50 = 5th value = 5, p90 = 9th value = 9.
        assert ledger.output_tokens("qa") == OutputStats(calls=10, p50=5, p90=9, max=10)
        assert ledger.output_tokens("other") == OutputStats(calls=1, p50=50, p90=50, max=50)
    assert nearest_rank([1, 2, 3], 50) == 2
    assert nearest_rank([7], 90) == 7


def test_workload_by_hand(tmp_path: Path) -> None:
    with open_ledger(tmp_path) as ledger:
        # Feature qa over 3 days: 4 provider calls + 2 hits = 6 calls -> 60 per 30 days.
        ledger.append(rec(1, input_tokens=100, output_tokens=20, tier="small"))
        ledger.append(rec(2, input_tokens=300, output_tokens=40, tier="small"))
        ledger.append(rec(3, input_tokens=50, cache_read_tokens=150, output_tokens=60, tier="mid"))
        ledger.append(rec(4, input_tokens=200, output_tokens=80, tier="mid", lane="async"))
        ledger.append(rec(5, cache_status="exact", input_tokens=999, output_tokens=999))
        ledger.append(rec(6, cache_status="coalesced", input_tokens=999, output_tokens=999))
        # Outside the window (4 days ago) and another feature.
        ledger.append(rec(7, ts_ms=NOW_MS - 4 * DAY_MS))
        ledger.append(rec(8, feature="chat", input_tokens=10, output_tokens=1, tier=None))
        ledger.flush()
        model = ledger.workload(3, now=NOW)
    assert model is not None
    chat, qa = model.features
    assert qa.feature == "qa"
    assert qa.requests_per_month == 60
    # Prompt tokens of provider calls: 100 + 300 + (50 + 150) + 200 = 800 over 4 calls.
    assert qa.avg_input_tokens == 200
    assert qa.avg_output_tokens == 50  # (20 + 40 + 60 + 80) / 4
    assert dict(qa.tier_mix) == {Tier.SMALL: 0.5, Tier.MID: 0.5}
    assert qa.cache_hit_rate == 2 / 6
    assert qa.prompt_cache_share == 150 / 800
    assert qa.batchable_share == 1 / 6
    # One call in 3 days -> 10 a month; its model is in no tier, so the mix is empty.
    assert (chat.feature, chat.requests_per_month, dict(chat.tier_mix)) == ("chat", 10, {})


def test_retention_prunes_old_records(tmp_path: Path) -> None:
    with open_ledger(tmp_path, retention_days=30) as ledger:
        ledger.append(rec(1, ts_ms=NOW_MS - 31 * DAY_MS))
        ledger.append(rec(2, ts_ms=NOW_MS - 29 * DAY_MS))
        ledger.flush()
        assert ledger.prune() == 1
        assert [r.request_id for r in ledger.records()] == ["r2"]


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from ledger_fixtures import rec
    from skinflint.ledger import Ledger

    ledger = Ledger(Path({path!r}), retention_days=3650)
    i = 0
    while True:
        for _ in range(25):
            ledger.append(rec(i, request_id=f"k{{i}}", ts_ms=2_000_000_000_000 + i))
            i += 1
        ledger.flush()
        print(i, flush=True)  # acknowledged: everything below i is committed
    """
)


def test_kill_9_loses_no_acknowledged_record(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    script = _WRITER.format(tests=str(Path(__file__).parent), path=str(path))
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    acknowledged = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acknowledged = int(line)
            if acknowledged >= 2000:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert acknowledged >= 2000
    with Ledger(path, retention_days=3650) as ledger:
        ids = {r.request_id for r in ledger.records()}
    missing = [i for i in range(acknowledged) if f"k{i}" not in ids]
    assert missing == []


@pytest.mark.parametrize("days", [0, -1])
def test_workload_rejects_a_non_positive_period(tmp_path: Path, days: int) -> None:
    with open_ledger(tmp_path) as ledger, pytest.raises(ValueError, match="last_days"):
        ledger.workload(days, now=NOW)


def test_ledger_can_be_disabled(make_settings: Callable[..., Settings]) -> None:
    with App.open(make_settings("ledger: {enabled: false}")) as app:
        assert app.ledger is None and app.history is None
    with App.open(make_settings("ledger: {retention_days: 7}")) as app:
        assert app.ledger is not None and app.ledger.retention_days == 7
        assert app.history is app.ledger
        assert app.ledger.path == app.data_dir / "ledger.sqlite3"
