"""A text progress bar for jobs that count finished chunks.

``dask.diagnostics.ProgressBar`` only sees the local schedulers; with a
``distributed.Client`` the job counts its own finished futures and reports
them here. Works in a terminal (one line redrawn with ``\\r``), in Jupyter, and
in log files (a new line every 10 %, no control characters).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["TextProgress"]


def _format_seconds(s: float) -> str:
    if s != s or s == float("inf"):  # NaN or inf: nothing to estimate yet
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


class TextProgress:
    """Callable ``progress(n_done, n_total, n_frames_done)`` drawing a bar.

    Parameters
    ----------
    label : str, optional
        Shown before the bar.
    stream : file, optional
        Default ``sys.stderr``.
    redraw : bool, optional
        Redraw one line with ``\\r``. Default: when ``stream`` is a terminal or
        the code runs in a Jupyter kernel.
    width : int, optional
        Characters of the bar.
    """

    def __init__(self, label: str = "tracking", stream: TextIO | None = None, *, redraw: bool | None = None,
                 width: int = 30):
        self.label = label
        self.stream = stream or sys.stderr
        if redraw is None:
            isatty = getattr(self.stream, "isatty", lambda: False)
            redraw = bool(isatty()) or "ipykernel" in sys.modules
        self.redraw = redraw
        self.width = width
        self._t0 = time.perf_counter()
        self._last_decile = -1
        self._start_done: int | None = None

    def __call__(self, n_done: int, n_total: int, n_frames: int = 0) -> None:
        if self._start_done is None:  # chunks finished by an earlier run do not count for the rate
            self._start_done = n_done
            self._t0 = time.perf_counter()
        frac = n_done / n_total if n_total else 1.0
        elapsed = time.perf_counter() - self._t0
        new = n_done - self._start_done
        rate = n_frames / elapsed if elapsed > 0 and n_frames else 0.0
        eta = elapsed / new * (n_total - n_done) if new else float("nan")
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        text = (f"{self.label} [{bar}] {100 * frac:5.1f}% {n_done}/{n_total} chunks"
                + (f", {rate:,.0f} frames/s" if rate else "")
                + (f", {_format_seconds(elapsed)} elapsed" if n_done >= n_total else f", ETA {_format_seconds(eta)}"))
        if self.redraw:
            self.stream.write("\r" + text + ("\n" if n_done >= n_total else ""))
        else:
            decile = int(frac * 10)
            if decile == self._last_decile and n_done < n_total:
                return
            self._last_decile = decile
            self.stream.write(text + "\n")
        self.stream.flush()
