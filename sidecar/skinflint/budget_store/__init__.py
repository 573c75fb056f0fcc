"""Budget stores: where reservations and spend live (local LMDB, or Redis for a fleet).

``open_budget_store`` is the one place the App gets its store from: it reads
``budgets.backend`` and imports the backend's module lazily, so a build without the Redis
client (or before the local store lands) still boots with another backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from skinflint.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from skinflint.budget_store.base import BudgetStore
    from skinflint.config import Settings

#: backend -> (module, class). A class with ``from_settings(settings)`` is built with it;
#: otherwise redis gets ``(budgets.redis_url, prefix=budgets.redis_prefix)``, local gets the
#: path ``<data_dir>/budgets`` and memory nothing.
_BACKENDS = {
    "memory": ("skinflint.budget_store.memory", "MemoryBudgetStore"),
    "local": ("skinflint.budget_store.local", "LocalBudgetStore"),
    "redis": ("skinflint.budget_store.redis_store", "RedisBudgetStore"),
}


def open_budget_store(settings: Settings) -> BudgetStore:
    """The store ``budgets.backend`` names, built from the settings.

    Raises:
        ConfigError: the backend's module or class is not available in this build, or it
            refused the settings (the issue names ``budgets.backend`` and what to do).
    """
    backend = settings.budgets.backend
    module_name, class_name = _BACKENDS[backend]
    try:
        module = importlib.import_module(module_name)
        cls: Any = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            [
                ConfigIssue(
                    "budgets.backend",
                    f"the {backend!r} budget store is not available in this build ({exc})",
                    "use budgets.backend: memory (one process, not kept across restarts) until "
                    "it is, or install what it needs",
                )
            ]
        ) from exc
    factory = getattr(cls, "from_settings", None)
    if factory is not None:
        store = factory(settings)
    elif backend == "redis":
        store = cls(settings.budgets.redis_url, prefix=settings.budgets.redis_prefix)
    elif backend == "local":
        store = cls(str(settings.data_dir / "budgets"))
    else:
        store = cls()
    return store  # type: ignore[no-any-return]


__all__ = ["open_budget_store"]
