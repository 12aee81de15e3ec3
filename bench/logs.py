"""Where output goes during `make bench`: the figures on stdout, everything else in a file.

The bench runs the real handlers in this process (directly, and behind the local
stack's API and pollers, in threads), so their Powertools JSON lines, the local stack's
and the libraries' log records, warnings and thread tracebacks would land between the
figures. They go to LOG_PATH instead (kept, not dropped: that is where to look when a
figure fails).

How, and why this way: Powertools' Logger writes through its own `StreamHandler`, which
takes `sys.stdout` *as it is when the first Logger of a service is created*, and that
happens inside the bench, whenever a handler module is first imported. So:
- `sys.stdout` and `sys.stderr` point at the file for the whole run: every Powertools
  handler created meanwhile binds to the file, as does anything printed or warned;
- the Powertools handlers that exist already are pointed at the file too (setStream);
- the root logger gets a handler on the file, for the module loggers (infra.local,
  botocore, ...), at INFO. Powertools keeps its own records off root handlers that exist
  when its Logger is created (its SuppressFilter), so nothing is written twice;
- the figures are written to the real stdout, which `figures()` hands out.
On the way out the streams and the root logger are restored; the file stays open until
the process ends, for any handler still bound to it.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

ROOT = Path(__file__).resolve().parents[1]
LOG_PATH = ROOT / ".bench" / "functions.log"

_figures: TextIO = sys.stdout


def figures() -> TextIO:
    """The stream the figures go to: the real stdout, also while the logs are redirected."""
    return _figures


def say(text: str = "") -> None:
    """One line of the bench's own output (figures, progress) on the real stdout."""
    print(text, file=_figures, flush=True)


def _powertools_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    return [handler for lg in loggers
            if isinstance(handler := getattr(lg, "powertools_handler", None), logging.StreamHandler)]


@contextmanager
def logs_to_file(path: Path = LOG_PATH) -> Iterator[Path]:
    """Send every log record, print and warning of this process to `path` (truncated)
    while the block runs; `say()` and `figures()` still reach the real stdout."""
    global _figures
    path.parent.mkdir(parents=True, exist_ok=True)
    file = open(path, "w", encoding="utf-8", buffering=1)  # line-buffered: readable while the bench runs
    saved_out, saved_err, saved_figures = sys.stdout, sys.stderr, _figures
    root = logging.getLogger()
    saved_level = root.level
    file_handler = logging.StreamHandler(file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    existing = [(handler, handler.setStream(file)) for handler in _powertools_handlers()]
    _figures = saved_out
    root.addHandler(file_handler)
    root.setLevel(logging.INFO)
    # moto's server logs every request at INFO: thousands of lines that say nothing here
    werkzeug = logging.getLogger("werkzeug")
    saved_werkzeug = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    sys.stdout = sys.stderr = file
    try:
        yield path
    finally:
        sys.stdout, sys.stderr, _figures = saved_out, saved_err, saved_figures
        root.removeHandler(file_handler)
        root.setLevel(saved_level)
        werkzeug.setLevel(saved_werkzeug)
        for handler, previous in existing:
            if previous is not None:
                handler.setStream(previous)
        file.flush()
