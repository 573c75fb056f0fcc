"""``skinflint serve`` with cProfile switched on by SIGUSR1, off and dumped by SIGUSR2.

Used by ``bench/overhead.py --profile FILE``: ``python bench/_profiled_sidecar.py FILE serve
...``. Profiling only the measured part keeps start-up (imports, config) out of the figures.
"""

from __future__ import annotations

import cProfile
import signal
import sys
from typing import Any


def main() -> None:
    out = sys.argv.pop(1)
    profiler = cProfile.Profile()

    def start(*_: Any) -> None:
        profiler.enable()

    def stop(*_: Any) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from skinflint.cli import app

    app(prog_name="skinflint")


if __name__ == "__main__":
    main()
