"""API keys: where they come from, and a holder that never shows them.

A key is read from a mounted secret file (Kubernetes/Docker secrets, the safer choice: it is
not inherited by child processes nor dumped with the environment) or from an environment
variable. It is resolved when a provider is first *used*, not when the sidecar boots, so a
sidecar configured with three providers but only one key still starts and serves that one;
a call that needs a missing key fails with ``ProviderNotConfigured`` naming what to set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from skinflint.errors import ProviderNotConfigured

_MASK: Final = "**********"


class SecretKey:
    """An API key whose ``repr``/``str`` never reveal it (like ``pydantic.SecretStr``).

    The value is only reachable through ``get_secret_value()``, so it cannot end up in a log
    line, an exception message or a traceback's local-variable dump by accident.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretKey('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where one provider's key lives: a secret file (checked first) and/or a variable.

    ``required=False`` is for endpoints that take no key (a local vLLM): ``resolve`` then
    returns ``None`` instead of raising when nothing is set.
    """

    provider: str
    env: str | None = None
    file: Path | None = None
    required: bool = True

    def resolve(self, environ: Mapping[str, str] | None = None) -> SecretKey | None:
        """The key, or ``None`` for an optional key that is not set.

        Raises ``ProviderNotConfigured`` (naming the variable or file) for a required key.
        A file that exists is authoritative; its trailing newline is stripped because
        ``echo key > file`` and most secret mounts add one.
        """
        if self.file is not None and self.file.is_file():
            value = self.file.read_text(encoding="utf-8").strip()
            if value:
                return SecretKey(value)
        if self.env is not None:
            value = (os.environ if environ is None else environ).get(self.env, "").strip()
            if value:
                return SecretKey(value)
        if not self.required:
            return None
        raise ProviderNotConfigured(self.provider, self.what_to_set())

    def what_to_set(self) -> str:
        """The variable (and/or file) an operator must provide, for the error message."""
        if self.env is not None and self.file is not None:
            return f"{self.env} (or write the key to the file {self.file})"
        if self.file is not None:
            return f"(none: write the key to the file {self.file})"
        return self.env or "(no key source configured: set api_key_env or api_key_file)"


__all__ = ["KeySource", "SecretKey"]
