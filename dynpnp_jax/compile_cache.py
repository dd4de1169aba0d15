"""JAX's persistent compilation cache under the package cache, so a second run skips XLA.

    from dynpnp_jax.compile_cache import enable_compilation_cache
    enable_compilation_cache()          # -> paths.cache_dir() / "xla", or None when opted out

The evaluation CLI turns it on (``--no-compile-cache`` or ``DYNPNP_NO_COMPILE_CACHE=1`` turn it
off). JAX's defaults only keep programs that took >= 1 s to compile; ours (the jitted solver per
shape and mode, the metrics) often compile faster than that but there are many of them, so the
thresholds are set to keep every program. Entries are keyed by JAX/XLA version, the program and
the backend, so a stale entry is never used; delete the folder to reclaim space.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import paths

__all__ = ["enable_compilation_cache", "compilation_cache_dir", "OPT_OUT_ENV"]

OPT_OUT_ENV = "DYNPNP_NO_COMPILE_CACHE"


def compilation_cache_dir() -> Path:
    """Where the compiled programs go: ``paths.cache_dir() / 'xla'``."""
    return paths.cache_dir() / "xla"


def _opted_out() -> bool:
    return os.environ.get(OPT_OUT_ENV, "").strip().lower() not in ("", "0", "false", "no")


def enable_compilation_cache(path: str | os.PathLike | None = None, *,
                             min_compile_time_secs: float = 0.0,
                             min_entry_size_bytes: int = 0) -> Path | None:
    """Turns on JAX's persistent compilation cache (process-wide).

    Args:
      path: the cache folder; default :func:`compilation_cache_dir`.
      min_compile_time_secs: programs that compiled faster are not stored (JAX default 1 s).
      min_entry_size_bytes: smaller entries are not stored.

    Returns:
      The folder, or None when ``$DYNPNP_NO_COMPILE_CACHE`` is set (to 1/true/yes): then nothing
      is changed.
    """
    if _opted_out():
        return None
    import jax

    folder = Path(path) if path is not None else compilation_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(min_entry_size_bytes))
    # JAX decides once per process whether the cache is used (at the first compilation); start
    # that decision afresh so a call after some compilation still takes effect.
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()
    return folder
