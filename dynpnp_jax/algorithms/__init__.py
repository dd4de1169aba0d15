"""Plug-and-play algorithms as units: one module per family, one registry line each.

Each module defines :class:`~dynpnp_jax.algorithms.base.Algorithm` records (state, ``init``,
``step``, per-iteration numbers with defaults and domains, traits); :func:`dynpnp_jax.restore`
scans the selected one. Adding an algorithm is a module and a line in :data:`ALGORITHMS`
(docs/extending.md shows one).
"""
from __future__ import annotations

from .admm import ADMM
from .base import NUMBERS, Algorithm, Numbers, Problem, Traits, dpir_schedule
from .calibrated import CALIBRATED
from .drs import DRS
from .fista import FISTA
from .dynamic import AUTHORS, GRADIENT
from .hqs import DPIR, HQS
from .network import PRIOR, STATIC
from .pgd import PGD
from .red import RED

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    AUTHORS, GRADIENT, PRIOR, STATIC, HQS, DPIR, CALIBRATED, ADMM, DRS, PGD, FISTA, RED)}


def register(algorithm: Algorithm, *, replace: bool = False) -> Algorithm:
    """Add ``algorithm`` to the registry under ``algorithm.name`` (a user's own algorithm:
    ``make_config(algorithm.name, ...)`` then builds its config). A name taken by another
    algorithm is refused unless ``replace``."""
    if not isinstance(algorithm, Algorithm):
        raise TypeError(f"register: expected an dynpnp_jax.algorithms.Algorithm, got "
                        f"{type(algorithm).__name__}")
    bad = sorted(set(algorithm.numbers) - set(NUMBERS))
    if bad:
        raise ValueError(f"register: {algorithm.name!r} reads unknown numbers {bad}; the traced "
                         f"per-iteration numbers are {NUMBERS}. Fix: name its numbers from those")
    old = ALGORITHMS.get(algorithm.name)
    if old is not None and old is not algorithm and not replace:
        raise ValueError(f"register: the name {algorithm.name!r} is taken by another algorithm. "
                         "Fix: choose another name, or register(..., replace=True)")
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


def get(name: str) -> Algorithm:
    """The algorithm registered as ``name`` (the config's ``mode``)."""
    if name not in ALGORITHMS:
        raise ValueError(f"mode must be one of {tuple(ALGORITHMS)}, got {name!r}")
    return ALGORITHMS[name]


def needs_landscape(shape, *, mode: str, a_step: str = "none", operator: str = "") -> bool:
    """The authors' row-mix A (the operator of ``mode``'s algorithm, ``operator='rowmix'`` or
    ``a_step='authors'``) needs width >= height: portrait images are rotated by 90 degrees first
    (the one owner of this rule; ``validation.to_landscape`` rotates)."""
    uses_rowmix = "rowmix" in (get(mode).operator, operator) or a_step == "authors"
    return bool(uses_rowmix and shape[-3] > shape[-2])


def names(**traits) -> tuple:
    """Registered names, optionally those whose traits equal the given values
    (``names(known_degradation=True)``)."""
    return tuple(n for n, a in ALGORITHMS.items()
                 if all(getattr(a.traits, k) == v for k, v in traits.items()))


__all__ = ["ALGORITHMS", "Algorithm", "NUMBERS", "Numbers", "Problem", "Traits", "dpir_schedule",
           "get", "names", "needs_landscape", "register"]
