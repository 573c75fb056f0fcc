"""The spend ledger: one durable record per finished call (``store.Ledger``, SQLite WAL in
the data dir), read by ``skinflint report`` and, as ``pipeline.history.History``, by
Estimate and Project."""

from skinflint.ledger.record import LedgerRecord, record_of
from skinflint.ledger.store import FILENAME, Ledger

__all__ = ["FILENAME", "Ledger", "LedgerRecord", "record_of"]
