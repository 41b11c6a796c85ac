"""Synthetic bright-field images of a bead at a known x, y, z.

The images come from a small optical model written for this package, so tests,
the demo and the benchmarks can compare tracked positions with the truth:

1. **Object.** A sphere of diameter ``bead_diameter_nm`` and complex refractive
   index ``n_bead + i k_bead`` in a medium ``n_medium``, treated as a thin
   object: a plane wave of vacuum wavelength ``wavelength_nm`` leaves it
   multiplied by ``t(r) = exp(i k0 (n_bead - n_medium + i k_bead) h(r))``,
   where ``h(r) = 2 sqrt(a**2 - r**2)`` is the bead's thickness and
   ``k0 = 2 pi / wavelength_nm``. Its Fourier transform is evaluated directly
   (not by FFT), so the sharp rim of the sphere does not alias.
2. **Defocus.** The field is propagated from the bead's centre plane to the
   focal plane with the angular spectrum method,
   ``exp(i 2 pi z (sqrt((n_medium / wavelength)**2 - f**2) - n_medium / wavelength))``.
3. **Objective.** The pupil passes spatial frequencies up to ``na / wavelength``.
   Its transmission falls smoothly (raised cosine) over the outer
   ``pupil_taper`` of its radius: real objectives are apodized and a real
   condenser is partially coherent, which both damp the outer rings; a hard
   edge (``pupil_taper=0``) gives ringing tails that reach across the ROI.
4. **Camera.** The intensity ``|U|**2`` is integrated over each square pixel
   (exactly, as a sinc filter in Fourier space: the intensity is band limited
   to ``2 na / wavelength``, which :class:`Optics` requires to be below the
   pixel Nyquist frequency, so no finer grid is needed), scaled so that the
   background far from the bead is ``background``, with the bead's modulation
   scaled by ``contrast``; optional Poisson photon noise; optional rounding to
   ``uint16`` camera counts.

Coordinates (the core's convention)
-----------------------------------
Stacks have shape ``(n_pixels, n_pixels, n_images)``: axis 0 is y (rows),
axis 1 is x (columns), axis 2 is the image. Pixel centres sit at integer
coordinates, so ``x`` is the column index of the pixel centre the bead sits on:
a bead at ``x = 31.5`` lies exactly between columns 31 and 32, and
``x = y = (n_pixels - 1) / 2`` is the centre of the ROI. ``x`` and ``y`` are in
pixels, ``z`` in nm.

``z`` is the bead centre's axial position relative to the focal plane,
positive away from the objective (towards the illumination). For ``z > 0``
the focal plane lies between the bead and the objective: the camera sees the
light after the bead has focused it (the bead acts as a ball lens with a
focal length of about 1.3 um), a bright centre near ``z = 1-2 um`` and rings
that widen as ``z`` grows. For ``z < 0`` the camera sees the virtual field
behind the bead: a dark centre with different rings. This matches the usual
magnetic-tweezers picture on an inverted microscope lit from above, where
pulling the bead up increases ``z``.

Recommended settings with the default :class:`Optics` (1 um polystyrene bead in
water, 640 nm, NA 0.8, 100 nm/px) and a 64 px ROI: ``z`` from 0.5 to 5 um
(several rings, and the pattern fits in the ROI; up to 6 um the outer ring
reaches the ROI edge); ``background=1000``; ``photons=1000`` for a realistic
signal to noise ratio (shot noise of about 3 % of the background).

Speed
-----
The centred bead's image spectrum is computed once per ``z`` plane on a
20 nm grid and cached per :class:`Optics` and ``n_pixels``. Each frame
then costs a linear interpolation between the two neighbouring planes, the
sub-pixel x, y shift as a Fourier phase ramp and one band-limited inverse
FFT, vectorised over batches of 256 frames, with the batches spread over up
to four threads (NumPy's FFTs, element-wise loops and random draws release
the GIL): fast enough that simulating an archive costs less than tracking it.
Arithmetic is single precision; images agree with a brute-force
fine-grid computation to about 5e-4 of the background. Rendering rates are
in benchmarks/README.md.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import math
import numbers
import os
import threading

import numpy as np

from magtrack_dask.validation import InputError, InputTypeError, check_count, check_positive

__all__ = ["Optics", "render_beads", "make_zlut"]

_Z_STEP_NM = 20.0  # plane spacing of the cache; linear interpolation between planes
_Z_LIMIT_NM = 20_000.0  # beyond this the field canvas grows large and the pattern leaves any ROI
_BATCH = 256  # frames per vectorised batch: large enough to amortise Python, small enough for cache
_CACHE_BYTES = 256 * 2**20  # plane spectra kept per (optics, n_pixels)
_MAX_THREADS = 4  # batches rendered side by side


@dataclasses.dataclass(frozen=True)
class Optics:
    """Optical parameters of the simulated bright-field microscope.

    The defaults describe a magnetic-tweezers setup: a 1 um polystyrene bead
    with a little absorption (magnetic beads carry iron oxide) in water, red
    illumination, an objective of NA 0.8 and 100 nm pixels in the object
    plane. With them rings are clearly visible from about 0.5 to 6 um
    defocus, and a 64 px ROI holds the pattern up to about 5 um.

    Parameters
    ----------
    wavelength_nm : float, optional
        Vacuum wavelength of the illumination, in nm.
    na : float, optional
        Numerical aperture of the objective; must be below ``n_medium``.
    pixel_size_nm : float, optional
        Camera pixel size in the object plane, in nm/px. Must be at most
        ``wavelength_nm / (4 * na)`` so that the image is Nyquist sampled
        (sub-pixel shifts are then exact).
    bead_diameter_nm : float, optional
        Bead diameter, in nm.
    n_bead : float, optional
        Real refractive index of the bead (1.59 polystyrene, 1.45 silica).
    k_bead : float, optional
        Imaginary refractive index (absorption) of the bead; >= 0.
    n_medium : float, optional
        Refractive index of the medium (1.33 water).
    pupil_taper : float, optional
        Fraction of the pupil radius, in [0, 1], over which the pupil
        transmission falls to zero at ``na`` (raised cosine); 0 is a hard edge.
    contrast : float, optional
        Scale of the bead's modulation of the background (1 is the physical
        value; smaller values mimic stray light or a camera offset).
    """

    wavelength_nm: float = 640.0
    na: float = 0.8
    pixel_size_nm: float = 100.0
    bead_diameter_nm: float = 1000.0
    n_bead: float = 1.59
    k_bead: float = 0.002
    n_medium: float = 1.33
    pupil_taper: float = 0.6
    contrast: float = 1.0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise InputError(f"Optics.{field.name} must be a finite real number, got {value!r}")
        for name in ("wavelength_nm", "na", "pixel_size_nm", "bead_diameter_nm", "n_bead", "n_medium"):
            if getattr(self, name) <= 0:
                raise InputError(f"Optics.{name} must be > 0, got {getattr(self, name)!r}")
        if self.na >= self.n_medium:
            raise InputError(
                f"Optics.na must be below n_medium ({self.n_medium}), got {self.na!r}"
            )
        if self.k_bead < 0:
            raise InputError(f"Optics.k_bead must be >= 0, got {self.k_bead!r}")
        if not 0 <= self.pupil_taper <= 1:
            raise InputError(f"Optics.pupil_taper must be within [0, 1], got {self.pupil_taper!r}")
        if self.contrast < 0:
            raise InputError(f"Optics.contrast must be >= 0, got {self.contrast!r}")
        nyquist_px = self.wavelength_nm / (4 * self.na)
        if self.pixel_size_nm > nyquist_px:
            raise InputError(
                f"Optics.pixel_size_nm must be <= wavelength_nm / (4 * na) = {nyquist_px:.1f} nm "
                f"so that the images are Nyquist sampled, got {self.pixel_size_nm!r}"
            )


def _fast_len(n: int) -> int:
    """Smallest 2**a * 3**b * 5**c >= n (fast FFT length)."""
    best = 2 ** math.ceil(math.log2(max(n, 1)))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


@functools.lru_cache(maxsize=8)
def _pupil_spectrum(optics: Optics, length: int):
    """Bead spectrum times pupil, and the defocus phase rate, on a length**2 canvas."""
    o = optics
    a = o.bead_diameter_nm / 2
    f = np.fft.fftfreq(length, d=o.pixel_size_nm)  # cycles/nm
    # Direct (midpoint-rule) Fourier transform of t - 1 on a fine grid over the bead;
    # t - 1 is even, so the transform is separable into real cosine sums.
    n_fine = 128
    xs = (np.arange(n_fine) - (n_fine - 1) / 2) * (2 * a / n_fine)
    h = 2 * np.sqrt(np.clip(a * a - xs[:, None] ** 2 - xs[None, :] ** 2, 0, None))
    k0 = 2 * np.pi / o.wavelength_nm
    t_minus_1 = np.expm1(1j * k0 * (o.n_bead - o.n_medium + 1j * o.k_bead) * h)
    c = np.cos(2 * np.pi * f[:, None] * xs[None, :])
    spectrum = c @ t_minus_1 @ c.T * (2 * a / n_fine) ** 2
    fr = np.hypot(f[:, None], f[None, :])
    f_cut = o.na / o.wavelength_nm
    if o.pupil_taper > 0:
        ramp = np.clip((f_cut - fr) / (o.pupil_taper * f_cut), 0, 1)
        pupil = np.sin(0.5 * np.pi * ramp) ** 2
    else:
        pupil = (fr <= f_cut).astype(float)
    k_m = o.n_medium / o.wavelength_nm
    # Phase per nm of defocus relative to the unscattered wave (which stays at phase 0).
    kz = 2 * np.pi * (np.sqrt(np.maximum(k_m**2 - fr**2, 0)) - k_m)
    return spectrum * pupil, kz


class _BeadModel:
    """Cached image spectra of a centred bead for one (optics, n_pixels).

    A frame is cut from a periodic canvas of ``M >= 2 n_pixels`` pixels: the
    bead's periodic copies then stay at least ``n_pixels`` away from every ROI
    pixel, so the Fourier shift wraps nothing visible into the ROI. Only the
    band ``|f| <= 2 na / wavelength`` of each spectrum is stored (everything
    else is zero), which also limits the inverse FFT to that band.
    """

    def __init__(self, optics: Optics, n_pixels: int):
        self.optics = optics
        self.n = n_pixels
        self.m = m = _fast_len(2 * n_pixels)
        self.centre = m // 2  # canvas pixel of the cached bead centre
        self.offset = (m - n_pixels) // 2  # canvas pixel of ROI pixel 0
        # Band of the intensity in FFT bins, plus one bin of margin (the taper makes it ~0 there).
        band = 2 * optics.na / optics.wavelength_nm * optics.pixel_size_nm * m
        kb = min(int(math.ceil(band)) + 1, m // 2 - 1)
        self.rows = np.r_[0 : kb + 1, m - kb : m]  # fy bins kept, FFT order
        self.n_cols = kb + 1  # fx bins kept (rfft half plane)
        self.fy = np.fft.fftfreq(m)[self.rows]  # cycles/px
        self.fx = np.fft.rfftfreq(m)[: self.n_cols]
        self._planes: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._max_planes = max(64, _CACHE_BYTES // (len(self.rows) * self.n_cols * 8))
        self._lock = threading.Lock()

    # -- field and plane spectra (computed once per plane) -------------------

    def _field_len(self, z_nm: float) -> int:
        """Field canvas size for defocus z: the light must not wrap into the crop."""
        o = self.optics
        sin_t = o.na / o.n_medium
        spread = (o.bead_diameter_nm / 2 + abs(z_nm) * sin_t / math.sqrt(1 - sin_t**2)) / o.pixel_size_nm
        psf = 3 * o.wavelength_nm / (o.na * o.pixel_size_nm)
        return _fast_len(max(self.m, int(self.m // 2 + spread + psf + 8)))

    def _compute_planes(self, ks: np.ndarray) -> list[np.ndarray]:
        o = self.optics
        m, c = self.m, self.centre
        sinc = (np.sinc(self.fy)[:, None] * np.sinc(self.fx)[None, :]) * o.contrast
        out = []
        for k in ks:
            z = k * _Z_STEP_NM
            length = self._field_len(z)
            spec, kz = _pupil_spectrum(o, length)
            u = 1 + np.fft.ifft2(spec * np.exp(1j * z * kz)) / o.pixel_size_nm**2
            idx = (np.arange(m) - c) % length  # crop around the bead at canvas pixel c
            d = np.abs(u[np.ix_(idx, idx)]) ** 2 - 1  # flat background removed: shifts add no edges
            f2 = np.fft.rfft2(d)[self.rows, : self.n_cols]
            out.append((f2 * sinc).astype(np.complex64))
        return out

    def planes(self, ks: np.ndarray) -> np.ndarray:
        """Plane spectra for integer plane indices ks, shape (len(ks), n_rows, n_cols)."""
        with self._lock:
            missing = [int(k) for k in ks if int(k) not in self._planes]
        n_chunks = min(_n_workers(), len(missing))
        chunks = [missing[i::n_chunks] for i in range(n_chunks)]
        new = {}
        for chunk, spectra in zip(chunks, _parallel_map(self._compute_planes, chunks)):
            new.update(zip(chunk, spectra))
        with self._lock:
            self._planes.update(new)
            got = []
            for k in ks:
                k = int(k)
                plane = self._planes.get(k)
                if plane is None:  # evicted by another thread in between
                    plane = new.get(k)
                    if plane is None:
                        plane = self._compute_planes([k])[0]
                else:
                    self._planes.move_to_end(k)
                got.append(plane)
            while len(self._planes) > self._max_planes:
                self._planes.popitem(last=False)
        return np.stack(got)

    # -- frames ---------------------------------------------------------------

    def frames(self, x, y, z) -> tuple:
        """Per-frame plane pairs, interpolation weights and shifts, with the planes used."""
        pos = z / _Z_STEP_NM
        k_lo = np.floor(pos).astype(np.int64)
        ks, inverse = np.unique(np.r_[k_lo, k_lo + 1], return_inverse=True)
        spectra = self.planes(ks)
        n_frames = x.shape[0]
        w_hi = (pos - k_lo).astype(np.float32)
        shift = self.centre - self.offset  # canvas position of the cached bead, in ROI pixels
        return spectra, inverse[:n_frames], inverse[n_frames:], w_hi, x - shift, y - shift

    def render(self, frames: tuple, sl: slice) -> np.ndarray:
        """Frames ``sl`` as I / I_background - 1, shape (batch, n, n) float32."""
        spectra, i_lo, i_hi, w_hi, dx, dy = frames
        m, n, o = self.m, self.n, self.offset
        w = w_hi[sl, None, None]
        s = spectra[i_lo[sl]] * (1 - w)
        s += spectra[i_hi[sl]] * w
        s *= np.exp(-2j * np.pi * dy[sl, None] * self.fy).astype(np.complex64)[:, :, None]
        s *= np.exp(-2j * np.pi * dx[sl, None] * self.fx).astype(np.complex64)[:, None, :]
        # Inverse FFT of the band only: along y over the kept columns, keep the ROI rows,
        # then along x (irfft pads the missing columns with zeros).
        full = np.zeros((s.shape[0], m, self.n_cols), np.complex64)
        full[:, self.rows] = s
        rows = np.fft.ifft(full, axis=1)[:, o : o + n]
        return np.fft.irfft(rows, n=m, axis=2)[:, :, o : o + n]


def _n_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    return max(1, min(_MAX_THREADS, cores))


def _parallel_map(func, items: list) -> list:
    """``list(map(func, items))`` on a few threads: NumPy's FFTs, element-wise loops and
    random draws release the GIL, so batches of frames run side by side."""
    workers = min(_n_workers(), len(items))
    if workers <= 1:
        return [func(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(func, items))


@functools.lru_cache(maxsize=8)
def _model(optics: Optics, n_pixels: int) -> _BeadModel:
    return _BeadModel(optics, n_pixels)


def _check_n_pixels(n_pixels) -> int:
    if isinstance(n_pixels, (bool, np.bool_)) or not isinstance(n_pixels, numbers.Integral) or n_pixels < 8:
        raise InputError(f"n_pixels must be an integer >= 8, got {n_pixels!r}")
    return int(n_pixels)


def _check_optics(optics) -> Optics:
    if optics is None:
        return Optics()
    if not isinstance(optics, Optics):
        raise InputTypeError(f"optics must be an Optics instance or None, got {type(optics).__name__}")
    return optics


def render_beads(
    x,
    y,
    z,
    *,
    n_pixels: int = 64,
    optics: Optics | None = None,
    background: float = 1000.0,
    photons: float | None = None,
    dtype="float64",
    seed=None,
) -> np.ndarray:
    """Render bright-field images of a bead at known positions.

    Parameters
    ----------
    x, y : float or array_like, shape (n_images,)
        Bead centre in pixels, in ROI coordinates: x is the column, y the row,
        pixel centres at integer values (``(n_pixels - 1) / 2`` is the ROI
        centre). Must lie within ``[-0.5, n_pixels - 0.5]``.
    z : float or array_like, shape (n_images,)
        Bead centre relative to the focal plane, in nm, positive away from
        the objective (see the module docstring); ``|z| <= 20000``.
        Scalars are broadcast to the length of the arrays.
    n_pixels : int, optional
        Width and height of the ROI in pixels (>= 8, odd sizes work).
    optics : Optics, optional
        Microscope and bead parameters; ``Optics()`` when None.
    background : float, optional
        Mean level far from the bead, in output units (> 0).
    photons : float, optional
        Expected photon count of a background pixel. When given, each pixel
        gets Poisson noise: ``counts ~ Poisson(photons * I / I_background)``,
        scaled back by ``background / photons``. With ``photons=background``
        the output is in photons and its variance equals its mean. None
        (default) gives noise-free images.
    dtype : {"float64", "float32", "uint16"}, optional
        Output type; ``"uint16"`` gives camera counts, rounded and clipped
        to 0..65535.
    seed : int, numpy.random.Generator or None, optional
        Seed of the photon noise (passed to ``numpy.random.default_rng``).

    Returns
    -------
    stack : ndarray, shape (n_pixels, n_pixels, n_images)
        The images in the core layout (y, x, image).

    Raises
    ------
    InputError
        If an argument is out of range; the message names it (a ValueError).
    InputTypeError
        If ``optics`` is not an :class:`Optics` (a TypeError).

    Examples
    --------
    >>> stack = render_beads([31.5, 30.2], [31.5, 33.0], 2000.0)
    >>> stack.shape
    (64, 64, 2)
    """
    n_pixels = _check_n_pixels(n_pixels)
    optics = _check_optics(optics)
    background = check_positive(background, "background")
    if photons is not None:
        photons = check_positive(photons, "photons")
    out_dtype = _check_out_dtype(dtype)
    x, y, z = _check_positions(x, y, z, n_pixels)
    n_images = x.shape[0]

    out = np.empty((n_pixels, n_pixels, n_images), out_dtype)
    if n_images == 0:
        return out
    model = _model(optics, n_pixels)
    frames = model.frames(x, y, z)
    batches = [slice(i, min(i + _BATCH, n_images)) for i in range(0, n_images, _BATCH)]
    if photons is None:
        seeds = [None] * len(batches)
    else:
        # One child stream per batch: the noise does not depend on how batches meet threads.
        seeds = np.random.default_rng(seed).integers(2**63, size=len(batches))

    def work(batch):
        sl, batch_seed = batch
        image = _camera_image(model.render(frames, sl), background, photons, batch_seed, out_dtype)
        out[:, :, sl] = image.transpose(1, 2, 0)

    _parallel_map(work, list(zip(batches, seeds)))
    return out


def _check_out_dtype(dtype) -> np.dtype:
    try:
        out_dtype = np.dtype(dtype)
    except TypeError as err:
        raise InputError(f"dtype must be 'float64', 'float32' or 'uint16', got {dtype!r}") from err
    if out_dtype not in (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.uint16)):
        raise InputError(f"dtype must be 'float64', 'float32' or 'uint16', got {dtype!r}")
    return out_dtype


def _check_positions(x, y, z, n_pixels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z as float64 ``(n_images,)`` (scalars broadcast), inside the ROI and the z range."""
    arrays = {}
    for name, value in (("x", x), ("y", y), ("z", z)):
        arr = np.asarray(value)
        if arr.ndim > 1 or arr.dtype.kind not in "fiu":
            raise InputError(
                f"{name} must be a real scalar or 1-D array, got shape {arr.shape} dtype {arr.dtype}"
            )
        arrays[name] = arr.astype(np.float64)
    lengths = [a.shape[0] for a in arrays.values() if a.ndim == 1]
    if len(set(lengths)) > 1:
        got = ", ".join(str(a.shape[0]) if a.ndim else "scalar" for a in arrays.values())
        raise InputError(f"x, y and z must have the same length, got {got}")
    n_images = lengths[0] if lengths else 1
    x, y, z = (np.broadcast_to(a, (n_images,)) for a in arrays.values())
    for name, arr in (("x", x), ("y", y)):
        inside = np.isfinite(arr) & (arr >= -0.5) & (arr <= n_pixels - 0.5)
        if not inside.all():
            raise InputError(
                f"{name} must lie within [-0.5, {n_pixels - 0.5}] px (inside the ROI), "
                f"got {float(arr[~inside][0])!r}"
            )
    inside = np.isfinite(z) & (np.abs(z) <= _Z_LIMIT_NM)
    if not inside.all():
        raise InputError(f"z must lie within +-{_Z_LIMIT_NM:g} nm of focus, got {float(z[~inside][0])!r}")
    return x, y, z


def _camera_image(image: np.ndarray, background: float, photons: float | None, seed, out_dtype) -> np.ndarray:
    """A batch ``I / I_background - 1`` (float32, changed in place) as camera values:
    scaled to ``background``, with Poisson noise when ``photons`` is given, rounded for uint16."""
    image += 1  # intensity relative to the background
    if seed is None:
        image *= background
    else:
        np.maximum(image, 0, out=image)  # photon rates cannot be negative
        image *= photons
        counts = np.random.default_rng(seed).poisson(image)
        if background == photons and out_dtype == np.uint16:
            image = np.minimum(counts, 65535, out=counts)  # already whole counts
        else:
            image = counts.astype(np.float32)
            image *= background / photons
    if out_dtype == np.uint16 and image.dtype.kind == "f":
        np.rint(image, out=image)
        np.clip(image, 0, 65535, out=image)
    return image


def make_zlut(
    z_ref,
    *,
    n_pixels: int = 64,
    optics: Optics | None = None,
    background: float = 1000.0,
    oversample_frames: int = 1,
) -> np.ndarray:
    """Z-LUT of a noise-free simulated bead, in the spec's format.

    Parameters
    ----------
    z_ref : array_like, shape (n_ref,)
        Reference z positions in nm, strictly monotonic (same convention as
        :func:`render_beads`).
    n_pixels : int, optional
        ROI width in pixels (>= 8).
    optics : Optics, optional
        Microscope and bead parameters; ``Optics()`` when None.
    background : float, optional
        Background level of the images the profiles are taken from (> 0).
    oversample_frames : int, optional
        Frames averaged per z (>= 1). With 1 the bead sits at the ROI centre
        ``((n_pixels - 1) / 2, (n_pixels - 1) / 2)``; with more, the frames
        spread the bead over one pixel around it (a low-discrepancy
        pattern), so the averaged profiles stand for a bead at any sub-pixel
        position.

    Returns
    -------
    zlut : ndarray, shape (1 + n_pixels // 2, n_ref)
        Row 0 is ``z_ref`` (nm); rows 1.. are the radial profiles
        (``radial_profile`` with ``oversample=1``, ``n_pixels // 2`` bins),
        one column per z, in the units of ``background``. Row 1 (the
        central bin, which ``lookup_z`` does not use) is NaN when no frame
        has a pixel centre within 0.5 px of the bead, as with
        ``oversample_frames=1`` and an even ``n_pixels``.

    Notes
    -----
    Radial profiles with 1 px bins depend on where the bead sits on the pixel
    grid; a single centred frame is the most symmetric (least typical) case,
    so a LUT for tracking beads at arbitrary sub-pixel positions is better
    built with ``oversample_frames=16`` or so.

    Examples
    --------
    >>> zlut = make_zlut(np.arange(500.0, 5001.0, 50.0))
    >>> zlut.shape
    (33, 91)
    """
    # Imported here so that importing the simulator does not pull in the core.
    from magtrack_dask.core.profiles import radial_profile

    n_pixels = _check_n_pixels(n_pixels)
    z_ref = np.asarray(z_ref)
    if z_ref.ndim != 1 or z_ref.shape[0] < 1 or z_ref.dtype.kind not in "fiu":
        raise InputError(f"z_ref must be a non-empty 1-D array of numbers, got shape {z_ref.shape}")
    z_ref = z_ref.astype(np.float64)
    step = np.diff(z_ref)
    if not np.all(np.isfinite(z_ref)) or not (np.all(step > 0) or np.all(step < 0)):
        raise InputError("z_ref must be finite and strictly increasing or decreasing")
    k = check_count(oversample_frames, "oversample_frames")
    # R2 low-discrepancy sequence (plastic number): even coverage of the pixel for any k,
    # and offset (0, 0) for the first frame.
    g = 1.32471795724474602596
    i = np.arange(k)
    dx = (0.5 + i / g) % 1 - 0.5
    dy = (0.5 + i / g**2) % 1 - 0.5
    centre = (n_pixels - 1) / 2
    x = np.tile(centre + dx, z_ref.shape[0])
    y = np.tile(centre + dy, z_ref.shape[0])
    z = np.repeat(z_ref, k)
    stack = render_beads(x, y, z, n_pixels=n_pixels, optics=optics, background=background)
    profiles = np.asarray(radial_profile(stack, x, y)).reshape(-1, z_ref.shape[0], k)
    # The central bin is empty (NaN) for frames with no pixel centre within 0.5 px of the
    # bead; average the frames that have one and leave NaN where none has.
    finite = np.isfinite(profiles)
    count = finite.sum(axis=2)
    total = np.where(finite, profiles, 0.0).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return np.vstack([z_ref[None, :], mean])
