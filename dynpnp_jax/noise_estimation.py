"""Noise-level estimation: the Gaussian noise std of an already noisy (or blurred and noisy) image.

A photograph arrives without its noise level, and the restoration loop (``sigma``, DPIR's
``noise_level``) needs one. ``estimate_noise_level(y)`` returns one std per image, on the [0, 1]
scale, for a float32 NHWC batch in [0, 1].

Methods (``method=``):

``'pca'``
    The principal-component patch estimator of Chen, Zhu and Heng (ICCV 2015, "An efficient
    statistical method for image noise level estimation"). Every overlapping ``8 x 8`` patch
    (all channels together: a colour patch is one vector of ``8*8*3`` values, so a colour image
    gets ONE level, that of noise with the same std in each channel) is a sample; the eigenvalues
    of their covariance are those of the clean patches plus ``sigma^2``. Clean natural patches
    live near a low-dimensional subspace, so the smallest eigenvalues are noise alone. Which of
    them: sorted ascending, the largest ``i`` whose first ``i`` eigenvalues have a mean ``tau``
    with as many of them above ``tau`` as below (noise-only eigenvalues scatter around
    ``sigma^2``; an image eigenvalue among them drags the mean above the median).
    ``sigma = sqrt(tau)``. On gray textured images few of the 64 directions are noise alone and
    it overestimates (Set12 at noise 5: +2 on average, 8-bit units).

``'weak-texture'``
    The same rule on the patches that look like noise only: starting from the ``'pca'`` level,
    keep the patches whose gradient energy (squared horizontal and vertical differences inside
    the patch) stays below the 99% quantile of a pure-noise patch's at the current level (Liu,
    Tanaka and Okutomi 2013's weak-texture selection; a gamma law with the exact mean and
    variance of that energy), re-estimate, repeat (at most 4 times). Stops while at least 10% of
    the patches are kept: selecting on the noisy patches themselves keeps the ones whose noise
    happens to be weak, which biases the level low when only a few qualify.

``'default'``
    ``'weak-texture'`` on gray images, ``'pca'`` on colour ones. Measured
    (``docs/results/noise_estimation.md``): on gray images the selection removes most of the
    all-patch estimator's overestimate; on colour images the 192-dimensional patches have many
    noise-only directions, the all-patch estimate is already within a few hundredths (8-bit), and
    the selection keeps too few patches (colour gradients) and reads low.

``'mad'``
    Donoho's wavelet estimator: the median absolute value of the finest diagonal Haar detail
    coefficients divided by 0.6745 (all channels pooled). The classical reference; it reads
    texture as noise and overestimates on textured images at low noise.

All are numpy, deterministic, and run once per image outside the jitted loop. The covariance is
float64 over at most ``MAX_PATCHES`` patches (a regular stride on larger images); a 512x512 gray
image takes a few tenths of a second.

Assumptions: additive white Gaussian noise of one std over the image (and its channels), not
clipped (clipping to [0, 1] removes noise in saturated regions and lowers the estimate, see the
results page). Blurred images are fine (a blur only makes the clean patches smoother). A gray
picture stored as three identical channels is estimated on one channel. Pure noise on small
images (128x128) can read up to ~7% low (Chen's rule stops a few eigenvalues early).
"""
from __future__ import annotations

import functools

import numpy as np

from .validation import check_images, is_concrete

__all__ = ["estimate_noise_level", "pca_noise_level", "mad_noise_level", "METHODS"]

METHODS = ("default", "weak-texture", "pca", "mad")

#: patch side of the PCA estimators.
PATCH = 8
#: patches used at most per image; larger images are sampled on a regular grid (deterministic).
MAX_PATCHES = 65536
#: weak-texture selection keeps patches below this quantile of pure-noise gradient energy.
DELTA = 0.99
#: the weak-texture step is taken only while at least this fraction of the patches is selected.
MIN_FRACTION = 0.1


def _patch_count(n: int, p: int, stride: int) -> int:
    return (n - p) // stride + 1


def _min_side(p: int, c: int) -> int:
    """The smallest square image side giving at least twice as many patches as dimensions."""
    d = p * p * c
    s = p
    while (s - p + 1) ** 2 < 2 * d:
        s += 1
    return s


def _chen_rule(eig: np.ndarray) -> float:
    """Chen-Zhu-Heng's choice of the noise variance from ascending covariance eigenvalues: the
    mean ``tau`` of the largest leading run ``eig[:i]`` with as many values above ``tau`` as
    below."""
    eig = np.maximum(eig, 0.0)
    csum = np.cumsum(eig)
    for i in range(eig.size, 0, -1):
        head = eig[:i]
        tau = csum[i - 1] / i
        if np.count_nonzero(head > tau) == np.count_nonzero(head < tau):
            return float(tau)
    return float(eig[0])  # not reached: i = 1 always satisfies the rule


def _cov_eigenvalues(patches: np.ndarray) -> np.ndarray:
    centred = patches - patches.mean(axis=0)
    return np.linalg.eigvalsh(centred.T @ centred / patches.shape[0])


@functools.lru_cache(maxsize=None)
def _texture_quantile(p: int, c: int, delta: float) -> float:
    """The ``delta`` quantile of a pure-noise patch's gradient energy over ``sigma^2``.

    A ``p x p x c`` patch of white noise ``z`` (std 1) has gradient energy ``z^T M z`` with
    ``M = Dh^T Dh + Dv^T Dv`` (horizontal and vertical differences inside the patch); a gamma law
    with its mean ``tr M`` and variance ``2 tr M^2`` stands in for it (Liu, Tanaka, Okutomi 2013
    use the same gamma form)."""
    from scipy.special import gammaincinv  # (scipy.stats takes seconds to import)

    eye = np.eye(p * p).reshape(p * p, p, p)
    dh = np.diff(eye, axis=2).reshape(p * p, -1).T
    dv = np.diff(eye, axis=1).reshape(p * p, -1).T
    m = dh.T @ dh + dv.T @ dv
    t1, t2 = c * np.trace(m), c * np.trace(m @ m)
    return float(gammaincinv(t1 * t1 / (2 * t2), delta) * 2 * t2 / t1)


def _box_sums(a: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """Sums of ``a`` (2-D) over every ``ph x pw`` window (integral image)."""
    s = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    s[1:, 1:] = a.cumsum(0).cumsum(1)
    return s[ph:, pw:] - s[:-ph, pw:] - s[ph:, :-pw] + s[:-ph, :-pw]


def _patches(img: np.ndarray, p: int, max_patches: int):
    """Every ``p x p`` patch (a regular stride keeping at most ``max_patches``) as rows of an
    ``(N, p*p*C)`` float64 matrix, and the gradient energy of each ``(N,)`` (squared horizontal
    and vertical differences inside the patch, all channels)."""
    h, w, c = img.shape
    stride = 1
    while _patch_count(h, p, stride) * _patch_count(w, p, stride) > max_patches:
        stride += 1
    x = img - img.mean()  # offset invariance and less cancellation in the moments
    win = np.lib.stride_tricks.sliding_window_view(x, (p, p), axis=(0, 1))[::stride, ::stride]
    patches = np.ascontiguousarray(win).reshape(-1, p * p * c)
    gh = (np.diff(x, axis=1) ** 2).sum(-1)
    gv = (np.diff(x, axis=0) ** 2).sum(-1)
    energy = _box_sums(gh, p, p - 1) + _box_sums(gv, p - 1, p)
    return patches, energy[::stride, ::stride].reshape(-1)


class _PrefixMoments:
    """Patches sorted by texture score, with the Gram matrices of blocks of them summed in
    order: the covariance of the ``n`` smoothest patches costs one partial block, not a pass
    over all of them (the weak-texture iterations select such prefixes)."""

    def __init__(self, patches: np.ndarray, score: np.ndarray, blocks: int = 64):
        order = np.argsort(score, kind="stable")
        self.score = score[order]
        self.p = patches[order]
        n, d = self.p.shape
        self.m = max(1, -(-n // blocks))
        starts = range(0, n, self.m)
        self.gram = np.zeros((len(starts) + 1, d, d))
        self.sums = np.zeros((len(starts) + 1, d))
        for k, s in enumerate(starts):
            blk = self.p[s:s + self.m]
            self.gram[k + 1] = self.gram[k] + blk.T @ blk
            self.sums[k + 1] = self.sums[k] + blk.sum(0)

    def count_below(self, threshold: float) -> int:
        return int(np.searchsorted(self.score, threshold, side="right"))

    def eigenvalues(self, n: int) -> np.ndarray:
        k = n // self.m
        rest = self.p[k * self.m:n]
        mean = (self.sums[k] + rest.sum(0)) / n
        cov = (self.gram[k] + rest.T @ rest) / n - np.outer(mean, mean)
        return np.linalg.eigvalsh(cov)


def pca_noise_level(img: np.ndarray, *, weak_texture: bool = True, patch: int = PATCH,
                    max_patches: int = MAX_PATCHES, delta: float = DELTA,
                    min_fraction: float = MIN_FRACTION, max_iter: int = 4) -> float:
    """The PCA estimate for ONE image ``(H, W, C)`` (float, [0, 1] scale).

    ``weak_texture=False``: Chen-Zhu-Heng's rule on the covariance of all patches.
    ``weak_texture=True``: that estimate, then repeatedly the same rule on the patches whose
    gradient energy a pure-noise patch of the current level would reach with probability at least
    ``1 - delta`` (Liu-Tanaka-Okutomi's weak-texture selection), until the level settles."""
    img = np.asarray(img, dtype=np.float64)
    p = int(patch)
    d = p * p * img.shape[2]
    patches, energy = _patches(img, p, max_patches)
    var = _chen_rule(_cov_eigenvalues(patches))
    if not weak_texture or var <= 0.0:
        return float(np.sqrt(var))
    q = _texture_quantile(p, img.shape[2], float(delta))
    prefix = _PrefixMoments(patches, energy)
    n_min = max(2 * d, int(np.ceil(min_fraction * patches.shape[0])))
    prev_n = None
    for _ in range(int(max_iter)):
        n_sel = prefix.count_below(var * q)
        # few patches look like noise (texture everywhere): the selection would keep only patches
        # whose noise happens to be weak and bias the level low; keep the level found so far
        if n_sel < n_min or n_sel == prev_n:
            break
        new = _chen_rule(prefix.eigenvalues(n_sel))
        prev_n = n_sel
        converged = abs(new - var) <= 1e-3 * var
        var = new
        if converged or var <= 0.0:
            break
    return float(np.sqrt(var))


def mad_noise_level(img: np.ndarray) -> float:
    """Donoho's MAD estimate for ONE image ``(H, W, C)``: median |HH| / 0.6745 of the finest
    orthonormal Haar diagonal band, all channels pooled."""
    img = np.asarray(img, dtype=np.float64)
    h, w, _ = img.shape
    x = img[: h - h % 2, : w - w % 2]
    a, b = x[0::2, 0::2], x[0::2, 1::2]
    cc, dd = x[1::2, 0::2], x[1::2, 1::2]
    hh = (a - b - cc + dd) / 2.0
    return float(np.median(np.abs(hh)) / 0.6745)


def estimate_noise_level(y, *, method: str = "default") -> np.ndarray:
    """The Gaussian noise std of each image of ``y``, on the [0, 1] scale.

    Args:
      y: float32 NHWC batch ``(B, H, W, C)`` with values in [0, 1] (noise may push some outside),
        1 (gray) or 3 (colour) channels. Blurred and noisy images (deblurring input) are fine.
      method: ``'default'`` (= ``'weak-texture'``: Chen-Zhu-Heng's PCA rule on the patches that
        look like noise, Liu-Tanaka-Okutomi's selection), ``'pca'`` (Chen-Zhu-Heng 2015 on all
        patches; overestimates on textured images at low noise) or ``'mad'`` (Donoho's wavelet
        median; overestimates more).

    Returns:
      ``np.ndarray`` of shape ``(B,)``, float64: one level per image (colour: one level for the
      three channels together). Multiply by 255 for 8-bit units. A noise-free constant image
      gives 0.

    Raises:
      ValueError: ``y`` not a rank-4 float batch in [0, 1], NaN/Inf, an unknown ``method``, or an
        image too small for the PCA estimator's 8x8 patches.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}; fix: pass "
                         "method='default' (weak-texture PCA), 'pca' or 'mad'")
    y = check_images("y", y)
    if not is_concrete(y):
        raise ValueError("y is traced (inside jax.jit/grad/vmap): estimate_noise_level runs once "
                         "per image on concrete arrays, in numpy; call it before the jitted loop "
                         "and pass the level in")
    a = np.asarray(y, dtype=np.float32)
    b, h, w, c = a.shape
    if method in ("default", "weak-texture", "pca"):
        need = _min_side(PATCH, c)
        n = _patch_count(h, PATCH, 1) * _patch_count(w, PATCH, 1) if min(h, w) >= PATCH else 0
        if n < 2 * PATCH * PATCH * c:
            raise ValueError(
                f"y has images of {h}x{w} pixels ({c} channel(s)): too small for the PCA noise "
                f"estimator, which needs at least {2 * PATCH * PATCH * c} overlapping "
                f"{PATCH}x{PATCH} patches (e.g. a {need}x{need} image); give a larger image or "
                "use method='mad'")
        # the weak-texture step pays on gray images; on colour ones the all-patch estimate is
        # already unbiased and the selection keeps too few patches
        # (docs/results/noise_estimation.md)
        out = []
        for i in range(b):
            img = a[i]
            # a gray picture stored as RGB: identical channels carry ONE noise draw; three copies
            # of it would make two thirds of the colour patch space noise-free (estimate 0)
            if c > 1 and all(np.array_equal(img[..., 0], img[..., j]) for j in range(1, c)):
                img = img[..., :1]
            weak = method == "weak-texture" or (method == "default" and img.shape[-1] == 1)
            out.append(pca_noise_level(img, weak_texture=weak))
    else:
        if h < 2 or w < 2:
            raise ValueError(f"y has images of {h}x{w} pixels: the MAD estimator needs at least "
                             "2x2 pixels (one Haar block); give a larger image")
        out = [mad_noise_level(a[i]) for i in range(b)]
    res = np.asarray(out, dtype=np.float64)
    if not np.all(np.isfinite(res)):  # cannot happen for finite input; never return a NaN level
        raise FloatingPointError(f"the noise estimate of image(s) "
                                 f"{np.flatnonzero(~np.isfinite(res)).tolist()} is not finite")
    return res
