"""The quality summary of a job: per-bead flag counts, stuck beads, the run's report."""

from __future__ import annotations

import dataclasses
import math
import os
from fractions import Fraction
from typing import Any

import numpy as np
import zarr

from magtrack_dask.core.flags import Flag

__all__ = ["BeadSums", "JobReport", "STUCK_STD_PX", "format_bead_summary", "stuck_beads", "summarize_results"]

#: A bead whose x and y standard deviations over the job are both below this
#: (px) is reported as stuck: a tethered bead fluctuates by more, while a bead
#: stuck to the surface shows only the tracking noise, which is less (the
#: figures are in benchmarks/README.md).
STUCK_STD_PX = 0.03
_MIN_STUCK_FRAMES = 10  # fewer tracked frames say nothing about motion
#: Column titles of the bead table.
_SHORT = {Flag.XY_NOT_FOUND: "no_xy", Flag.Z_AT_LUT_EDGE_OR_NAN: "z_edge", Flag.SATURATED: "saturated",
          Flag.NEAR_ROI_EDGE: "near_edge", Flag.INPUT_UNREADABLE: "unreadable"}


@dataclasses.dataclass
class JobReport:
    """What one run of a job did.

    Attributes
    ----------
    out : str
        The results store.
    n_chunks, n_frames : int
        Frame chunks and frames of the whole job.
    n_skipped : int
        Chunks already finished by an earlier run.
    n_computed : int
        Chunks computed by this run.
    complete : bool
        Every chunk is finished (metadata consolidated).
    elapsed_s : float
        Wall time of this run.
    unreadable_frames : list of (int, int)
        ``(first, last)`` frame of each chunk whose input could not be read
        (flag 16): written as NaN but not finished; repair the archive and
        rerun with ``resume=True`` to fill them in.
    beads : dict or None
        Per-bead quality counts of the finished (and unreadable) chunks, see
        :func:`summarize_results`; also stored in the job record.
    """

    out: str
    n_chunks: int
    n_frames: int
    n_skipped: int
    n_computed: int
    complete: bool
    elapsed_s: float
    unreadable_frames: list = dataclasses.field(default_factory=list)
    beads: dict | None = None

    @property
    def incomplete_input(self) -> bool:
        """Some input could not be read: the job cannot complete until it is repaired."""
        return bool(self.unreadable_frames)

    def summary(self) -> str:
        state = "complete" if self.complete else f"incomplete ({self.n_skipped + self.n_computed}/{self.n_chunks})"
        text = (f"{self.out}: {self.n_computed} chunks computed, {self.n_skipped} already done, "
                f"{self.n_chunks} in all ({self.n_frames} frames), {state}, {self.elapsed_s:.1f} s")
        if self.unreadable_frames:
            text += ("\nunreadable input, frames " + ", ".join(f"{a}-{b}" for a, b in self.unreadable_frames)
                     + ": flagged 16 and left unfinished; repair the archive and rerun with --resume")
        return text

    def bead_table(self, max_rows: int = 20) -> str:
        """The per-bead counts as text (see :func:`format_bead_summary`)."""
        return format_bead_summary(self.beads, max_rows=max_rows) if self.beads else ""


def _xy_std(n, sx, sy, sxx, syy) -> list[list[float] | None]:
    """Per bead ``[std x, std y]`` from the count and the sums of its tracked positions."""
    std: list[list[float] | None] = []
    for b in range(len(n)):
        if n[b] < 2:
            std.append(None)
            continue
        mx, my = sx[b] / n[b], sy[b] / n[b]
        std.append([float(np.sqrt(max(sxx[b] / n[b] - mx * mx, 0.0))),
                    float(np.sqrt(max(syy[b] / n[b] - my * my, 0.0)))])
    return std


def _exact_sums(values: np.ndarray) -> list[tuple[int, int]]:
    """Per row, the exact sum of the finite values as ``(m, e)``: ``m * 2**e``, canonical.

    Every float64 is an integer times a power of two: the integers are summed
    per exponent (as two 26-bit halves, so no int64 sum overflows), then
    shifted together in Python integers. The result does not depend on the
    order of the values or how they are split between tasks.
    """
    values = np.where(np.isfinite(values), values, 0.0)
    mant, exp = np.frexp(values)
    mant = (mant * 2.0**53).astype(np.int64)  # exact: 53 significant bits
    exp = exp.astype(np.int64) - 53
    out = []
    for row_m, row_e in zip(mant, exp):
        used = row_m != 0
        total, low = 0, 0
        if used.any():
            row_m, row_e = row_m[used], row_e[used]
            low = int(row_e.min())
            for e in np.unique(row_e):
                m = row_m[row_e == e]
                total += ((int((m >> 26).sum()) << 26) + int((m & (2**26 - 1)).sum())) << (int(e) - low)
        out.append(_canonical(total, low))
    return out


def _canonical(m: int, e: int) -> tuple[int, int]:
    if m == 0:
        return 0, 0
    zeros = (m & -m).bit_length() - 1
    return m >> zeros, e + zeros


def _add_exact(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (ma, ea), (mb, eb) = a, b
    low = min(ea, eb)
    return _canonical((ma << (ea - low)) + (mb << (eb - low)), low)


def _fraction(a: tuple[int, int]) -> Fraction:
    m, e = a
    return Fraction(m << e) if e >= 0 else Fraction(m, 1 << -e)


@dataclasses.dataclass
class BeadSums:
    """Per-bead counts and exact sums of some frames of the results: what a quality summary is made of.

    Each task returns one for its frames; the driver adds them up (:meth:`add`)
    and stores the total in the job record, so that no run rereads finished
    results. The sums are exact (integers times powers of two), so the total
    is the same whatever the order the tasks finish in.

    Attributes
    ----------
    n_frames : int
    n_tracked, n_flagged : list of int
        Per bead: frames with finite x and y; frames with any flag.
    flag_counts : list of list of int
        Per :class:`~magtrack_dask.core.flags.Flag` bit, per bead.
    sums : list of list of (int, int)
        Per bead the exact ``[sum x, sum y, sum x*x, sum y*y]`` of its tracked
        ROI-relative positions (px, px**2), each ``(m, e)`` meaning ``m * 2**e``.
    """

    n_frames: int
    n_tracked: list
    n_flagged: list
    flag_counts: list
    sums: list

    @classmethod
    def zeros(cls, n_beads: int) -> BeadSums:
        return cls(0, [0] * n_beads, [0] * n_beads, [[0] * n_beads for _ in Flag], [[(0, 0)] * 4] * n_beads)

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, flags: np.ndarray) -> BeadSums:
        """The sums of ``(bead, frame)`` ROI-relative positions ``x``, ``y`` (px) and their ``flags``."""
        ok = np.isfinite(x) & np.isfinite(y)
        x0, y0 = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
        per = [_exact_sums(v) for v in (x0, y0, x0 * x0, y0 * y0)]
        return cls(int(x.shape[1]), [int(v) for v in ok.sum(axis=1)], [int(v) for v in (flags != 0).sum(axis=1)],
                   [[int(v) for v in ((flags & int(flag)) != 0).sum(axis=1)] for flag in Flag],
                   [list(t) for t in zip(*per)])

    def add(self, other: BeadSums) -> BeadSums:
        """The sums of both (a new object)."""
        return BeadSums(self.n_frames + other.n_frames, [a + b for a, b in zip(self.n_tracked, other.n_tracked)],
                        [a + b for a, b in zip(self.n_flagged, other.n_flagged)],
                        [[a + b for a, b in zip(f, g)] for f, g in zip(self.flag_counts, other.flag_counts)],
                        [[_add_exact(a, b) for a, b in zip(s, t)] for s, t in zip(self.sums, other.sums)])

    def to_json(self) -> dict:
        """JSON-ready (the big integers as decimal strings)."""
        return {"n_frames": self.n_frames, "n_tracked": self.n_tracked, "n_flagged": self.n_flagged,
                "flag_counts": self.flag_counts, "sums": [[[str(m), e] for m, e in s] for s in self.sums]}

    @classmethod
    def from_json(cls, d: dict) -> BeadSums:
        return cls(int(d["n_frames"]), list(d["n_tracked"]), list(d["n_flagged"]), [list(c) for c in d["flag_counts"]],
                   [[(int(m), int(e)) for m, e in s] for s in d["sums"]])

    def xy_std_px(self) -> list[list[float] | None]:
        """Per bead ``[std x, std y]`` (px) of its tracked frames, None for fewer than 2."""
        out: list[list[float] | None] = []
        for n, s in zip(self.n_tracked, self.sums):
            if n < 2:
                out.append(None)
                continue
            sx, sy, sxx, syy = (_fraction(v) for v in s)
            # exact variance n * sum(v**2) - sum(v)**2, over n**2; rounded once
            out.append([math.sqrt(max(float((n * sxx - sx * sx) / (n * n)), 0.0)),
                        math.sqrt(max(float((n * syy - sy * sy) / (n * n)), 0.0))])
        return out

    def summary(self, stuck_std_px: float = STUCK_STD_PX) -> dict[str, Any]:
        """The per-bead summary, as :func:`summarize_results` returns it."""
        std = self.xy_std_px()
        return {
            "n_frames": self.n_frames,
            "flag_counts": {flag.key: list(c) for flag, c in zip(Flag, self.flag_counts)},
            "n_flagged": list(self.n_flagged),
            "xy_std_px": std,
            "stuck_std_px": float(stuck_std_px),
            "stuck": stuck_beads(std, self.n_tracked, stuck_std_px),
        }


def stuck_beads(xy_std_px, n_tracked, stuck_std_px: float = STUCK_STD_PX) -> list[int]:
    """Positions of the beads that count as stuck to the surface.

    Parameters
    ----------
    xy_std_px : sequence of (float, float) or None
        Per bead ``[std x, std y]`` (px) over its tracked frames; None when unknown.
    n_tracked : sequence of int
        Tracked frames per bead.
    stuck_std_px : float, optional
        Both standard deviations below this, with at least 10 tracked frames: stuck.

    Returns
    -------
    list of int
    """
    return [b for b, (std, n) in enumerate(zip(xy_std_px, n_tracked))
            if std is not None and n >= _MIN_STUCK_FRAMES and max(std) < stuck_std_px]


def summarize_results(out, *, chunks=None, bounds=None, client=None,
                      stuck_std_px: float = STUCK_STD_PX) -> dict[str, Any]:
    """Per-bead quality counts of a results store: how often each flag is set, and stuck beads.

    Reads ``flags``, ``x`` and ``y`` (17 bytes per bead and frame, a small
    fraction of what tracking read) chunk by chunk on the cluster.

    Parameters
    ----------
    out : str or os.PathLike
        Results store (from :func:`~magtrack_dask.jobs.run_job` or
        :func:`magtrack_dask.write_results`).
    chunks : array_like of bool, optional
        With ``bounds``: count only the frames of these frame chunks (a job's
        finished ones); default every frame.
    bounds : array_like of int, optional
        First frame of each chunk, then the frame count
        (:attr:`~magtrack_dask.jobs.Job.bounds`).
    client : distributed.Client, optional
        Compute on it; default the current scheduler.
    stuck_std_px : float, optional
        A bead with at least 10 tracked frames whose x and y standard deviations
        are both below this is listed as stuck (default :data:`STUCK_STD_PX`).

    Returns
    -------
    dict
        JSON-ready: ``n_frames`` (frames counted), ``flag_counts``
        ``{flag name: [frames per bead]}`` for every bit of
        :class:`magtrack_dask.core.flags.Flag`, ``n_flagged`` (frames with any
        flag, per bead), ``xy_std_px`` (``[std x, std y]`` per bead over its
        tracked frames, None when fewer than 2), ``stuck_std_px`` and ``stuck``
        (the stuck beads' indices).
    """
    import dask
    import dask.array as da

    root = zarr.open_group(os.fspath(out), mode="r", zarr_format=3)
    n_beads, n_frames = root["flags"].shape
    chunk = root["flags"].chunks[1]
    step = max(chunk, (2**20 // max(n_beads, 1)) // chunk * chunk)  # ~1 Mi values per task, whole chunks
    flags, x, y = (da.from_zarr(root[n], chunks=(n_beads, step)) for n in ("flags", "x", "y"))
    if chunks is not None and not np.all(chunks):
        sel = np.repeat(np.asarray(chunks, dtype=bool), np.diff(np.asarray(bounds)))
        flags, x, y = flags[:, sel], x[:, sel], y[:, sel]
    # ROI-relative positions: small numbers, so the sums of squares keep their digits.
    x = x - root["roi_left"][...][:, None]
    y = y - root["roi_top"][...][:, None]
    ok = da.isfinite(x) & da.isfinite(y)
    x0, y0 = da.where(ok, x, 0.0), da.where(ok, y, 0.0)
    sums = [ok.sum(axis=1), x0.sum(axis=1), y0.sum(axis=1), (x0 * x0).sum(axis=1), (y0 * y0).sum(axis=1),
            (flags != 0).sum(axis=1)] + [((flags & int(flag)) != 0).sum(axis=1) for flag in Flag]
    n, sx, sy, sxx, syy, n_flagged, *counts = dask.compute(*sums, scheduler=client)
    std = _xy_std(n, sx, sy, sxx, syy)
    stuck = stuck_beads(std, n, stuck_std_px)
    return {
        "n_frames": int(flags.shape[1]),
        "flag_counts": {flag.key: [int(v) for v in c] for flag, c in zip(Flag, counts)},
        "n_flagged": [int(v) for v in n_flagged],
        "xy_std_px": std,
        "stuck_std_px": float(stuck_std_px),
        "stuck": stuck,
    }


def format_bead_summary(summary: dict, *, max_rows: int = 20) -> str:
    """A text table of :func:`summarize_results`: one row per bead with a flag or stuck.

    Parameters
    ----------
    summary : dict
        From :func:`summarize_results` (or ``job_status(out)["summary"]``).
    max_rows : int, optional
        Beads listed at most (the most flagged first); the rest are counted.
    """
    names = list(summary["flag_counts"])
    short = {flag.key: title for flag, title in _SHORT.items()}
    stuck = set(summary["stuck"])
    rows = [b for b, k in enumerate(summary["n_flagged"]) if k or b in stuck]
    rows.sort(key=lambda b: -summary["n_flagged"][b])
    head = (f"per bead, of {summary['n_frames']} frames: {len(rows)} of {len(summary['n_flagged'])} beads "
            f"flagged or stuck (xy std < {summary['stuck_std_px']:g} px)")
    if not rows:
        return head
    cols = ["bead", "flagged"] + [short.get(n, n) for n in names] + ["xy_std_px", "stuck"]
    lines = [head, "  ".join(f"{c:>10}" for c in cols)]
    for b in rows[:max_rows]:
        std = summary["xy_std_px"][b]
        cells = [b, summary["n_flagged"][b]] + [summary["flag_counts"][n][b] for n in names]
        cells += ["-" if std is None else f"{max(std):.3g}", "yes" if b in stuck else ""]
        lines.append("  ".join(f"{c:>10}" for c in cells))
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more (job_status(out)['summary'] has them all)")
    return "\n".join(lines)
