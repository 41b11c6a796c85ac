"""A real-looking 8-bit camera field of view: ring beads, debris, uneven light, JPEG-like noise.

:mod:`magtrack_dask.sim.beads` renders beads from the optics, on a flat
background, one bead per ROI. Bead finding must also work on what a lab's
camera gives, so this module draws a whole field differently, on purpose:

- **Beads**: a Bessel-ring pattern ``1 + a J0(2 pi r / period) w(r)`` (with
  ``w`` a smooth cut-off at the bead's pattern radius), dark or bright core
  (the sign of ``a``), radius, ring period (5 px and more: finer rings do
  not survive JPEG-like quantisation) and contrast drawn per bead.
- **Placement**: isolated beads on a jittered grid, some touching pairs, some
  beads cut by the frame edge; all with known centres and a kind label.
- **Debris**: fibres (thin curved lines), irregular blobs (a few overlapping
  Gaussians), saturated bright blobs, small specks and large smooth
  Gaussian blobs (round but not ring-like, the wrong size).
- **Camera**: gradient illumination with vignetting, shot-like noise,
  8-bit quantisation, and JPEG-like block noise: 8 x 8 block DCT (``scipy.fft``)
  quantised with the JPEG luminance table at a given quality.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, special

from magtrack_dask.validation import check_count, check_positive

__all__ = ["FieldTruth", "camera_field"]

# JPEG's standard luminance quantisation table (ITU-T T.81, Annex K).
_JPEG_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99],
], dtype=np.float64)


class FieldTruth(dict):
    """What :func:`camera_field` drew: ``x``, ``y`` (px), ``radius`` (px) and ``kind`` per bead.

    ``kind`` is ``'isolated'``, ``'pair'`` (touching another bead) or ``'edge'``
    (cut by the frame edge); ``debris`` lists ``(x, y, kind)`` of the debris.
    """


def _ring_bead(canvas, x, y, radius, period, amplitude):
    """Multiply ``canvas`` by one Bessel-ring bead centred at ``(x, y)``, in place."""
    h, w = canvas.shape
    reach = int(radius * 1.3) + 2
    top, left = max(0, int(y) - reach), max(0, int(x) - reach)
    bottom, right = min(h, int(y) + reach + 1), min(w, int(x) + reach + 1)
    yy, xx = np.mgrid[top:bottom, left:right]
    r = np.hypot(xx - x, yy - y)
    window = 0.5 * (1 + np.cos(np.pi * np.clip((r - 0.6 * radius) / (0.6 * radius), 0, 1)))  # flat, then tapers
    canvas[top:bottom, left:right] *= 1 + amplitude * special.j0(2 * np.pi * r / period) * window


def _gauss(canvas, x, y, sx, sy, angle, amplitude):
    """Add a rotated Gaussian blob (in place)."""
    h, w = canvas.shape
    reach = int(3.5 * max(sx, sy)) + 2
    top, left = max(0, int(y) - reach), max(0, int(x) - reach)
    bottom, right = min(h, int(y) + reach + 1), min(w, int(x) + reach + 1)
    yy, xx = np.mgrid[top:bottom, left:right]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * (xx - x) + s * (yy - y), -s * (xx - x) + c * (yy - y)
    canvas[top:bottom, left:right] += amplitude * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))


def _fibre(canvas, rng, x, y, length, amplitude):
    """Add a thin, gently curved fibre through ``(x, y)`` (in place)."""
    angle, bend = rng.uniform(0, np.pi), rng.uniform(-0.02, 0.02)
    for t in np.linspace(-length / 2, length / 2, int(length)):
        a = angle + bend * t
        _gauss(canvas, x + t * np.cos(a), y + t * np.sin(a), 1.2, 1.2, 0.0, amplitude / 2)


def _jpeg_like(image, quality, rng):
    """8 x 8 block DCT quantisation, as a JPEG encoder at ``quality`` (1-100) does it."""
    h, w = image.shape
    hp, wp = -(-h // 8) * 8, -(-w // 8) * 8
    padded = np.pad(image - 128.0, ((0, hp - h), (0, wp - w)), mode="edge")
    blocks = padded.reshape(hp // 8, 8, wp // 8, 8).transpose(0, 2, 1, 3)
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    table = np.clip(np.floor((_JPEG_LUMA * scale + 50) / 100), 1, 255)
    coeffs = fft.dctn(blocks, axes=(2, 3), norm="ortho")
    coeffs = np.round(coeffs / table) * table
    out = fft.idctn(coeffs, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(hp, wp)[:h, :w]
    return out + 128.0


def camera_field(
    shape: tuple[int, int] = (1100, 1100),
    *,
    spacing: int = 96,
    radius_px: tuple[float, float] = (10.0, 20.0),
    n_pairs: int = 6,
    n_edge: int = 6,
    n_debris: int = 10,
    noise: float = 3.0,
    jpeg_quality: int = 75,
    seed: int = 0,
) -> tuple[np.ndarray, FieldTruth]:
    """A uint8 camera frame with ring beads, debris, uneven light and JPEG-like noise.

    Beads sit on a jittered grid of ``spacing`` px; some grid cells hold a
    touching pair or a piece of debris instead of an isolated bead, and beads
    are added across the frame edge.

    Parameters
    ----------
    shape : (height, width), px
    spacing : int
        Grid spacing, px: isolated beads are at least ``spacing - 8`` px apart.
    radius_px : (min, max)
        Range of the beads' pattern radii, px (diameters 20-40 px by default).
    n_pairs, n_edge, n_debris : int
        Grid cells given to touching pairs and to debris; beads cut by the edge.
    noise : float
        Standard deviation of the pixel noise before quantisation, grey levels.
    jpeg_quality : int
        1-100, as a JPEG encoder's; 100 leaves only rounding.
    seed : int

    Returns
    -------
    frame : (height, width) uint8 ndarray
    truth : FieldTruth
        Bead centres ``x``, ``y`` (px, pixel centres at integers), ``radius``
        (px), ``kind`` per bead; ``debris`` as ``(x, y, kind)``.
    """
    h, w = (check_count(s, "shape") for s in shape)
    spacing = check_count(spacing, "spacing")
    check_positive(noise + 1e-300, "noise")
    rng = np.random.default_rng(seed)
    # Cells at least one spacing from the edges, away from the beads cut by it.
    cells = [(spacing * (1 + i), spacing * (1 + j))
             for i in range((h - 2 * spacing) // spacing + 1) for j in range((w - 2 * spacing) // spacing + 1)]
    order = rng.permutation(len(cells))
    pair_cells = [cells[i] for i in order[:n_pairs]]
    debris_cells = [cells[i] for i in order[n_pairs:n_pairs + n_debris]]
    bead_cells = [cells[i] for i in order[n_pairs + n_debris:]]
    xs, ys, kinds = [], [], []
    for cy, cx in bead_cells:
        xs.append(cx + rng.uniform(-4, 4)), ys.append(cy + rng.uniform(-4, 4)), kinds.append("isolated")
    radii = list(rng.uniform(*radius_px, len(xs)))
    for cy, cx in pair_cells:  # two beads whose patterns touch
        r1, r2 = rng.uniform(*radius_px, 2)
        a = rng.uniform(0, np.pi)
        d = (r1 + r2) * rng.uniform(0.8, 1.1) / 2
        for s, r in ((-1, r1), (1, r2)):
            xs.append(cx + s * d * np.cos(a)), ys.append(cy + s * d * np.sin(a)), kinds.append("pair"), radii.append(r)
    for k in range(n_edge):  # centres within a radius of an edge: the pattern is cut
        r = rng.uniform(*radius_px)
        along = rng.uniform(spacing, (w if k % 2 else h) - spacing)
        depth = rng.uniform(-0.3, 0.6) * r
        side = k % 4
        x, y = [(depth, along), (along, depth), (w - 1 - depth, along), (along, h - 1 - depth)][side]
        xs.append(x), ys.append(y), kinds.append("edge"), radii.append(r)
    yy, xx = np.mgrid[0:h, 0:w]
    # Uneven light: a tilt and a vignette, 55 % to 100 % of the brightest level.
    light = 150 * (1 - 0.25 * (xx / w) - 0.15 * (yy / h)) * (
        1 - 0.25 * (((xx - 0.6 * w) / w) ** 2 + ((yy - 0.4 * h) / h) ** 2))
    canvas = np.ones((h, w))
    for x, y, r in zip(xs, ys, radii):
        _ring_bead(canvas, x, y, r, period=max(5.0, r * rng.uniform(0.35, 0.55)),
                   amplitude=rng.choice([-1, 1]) * rng.uniform(0.25, 0.45))
    canvas *= light
    debris = []
    kinds_debris = ["fibre", "blob", "saturated", "speck", "smooth"]
    for k, (cy, cx) in enumerate(debris_cells):
        kind = kinds_debris[k % len(kinds_debris)]
        x, y = cx + rng.uniform(-8, 8), cy + rng.uniform(-8, 8)
        if kind == "fibre":
            _fibre(canvas, rng, x, y, rng.uniform(30, 70), -rng.uniform(30, 60))
        elif kind == "blob":
            for _ in range(4):
                _gauss(canvas, x + rng.normal(0, 5), y + rng.normal(0, 5), rng.uniform(2, 5), rng.uniform(2, 5),
                       rng.uniform(0, np.pi), -rng.uniform(20, 40))
        elif kind == "saturated":
            _gauss(canvas, x, y, 7, 6, rng.uniform(0, np.pi), 400)
        elif kind == "speck":
            _gauss(canvas, x, y, 1.5, 1.5, 0.0, -60)
        else:
            _gauss(canvas, x, y, 25, 25, 0.0, -35)
        debris.append((x, y, kind))
    canvas += rng.normal(0, noise, canvas.shape) + rng.normal(0, 1, canvas.shape) * np.sqrt(canvas.clip(0) / 20)
    frame = np.clip(np.rint(_jpeg_like(np.clip(canvas, 0, 255), jpeg_quality, rng)), 0, 255).astype(np.uint8)
    truth = FieldTruth(x=np.array(xs), y=np.array(ys), radius=np.array(radii), kind=np.array(kinds), debris=debris)
    return frame, truth
