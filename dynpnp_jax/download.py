"""Verified downloads: the one place that fetches a file from the internet and checks its sha256.

Used by the weights registry (:mod:`dynpnp_jax.weights`) and the dataset sources
(:mod:`dynpnp_jax.data`). A file is written to ``<dest>.part`` and renamed only once complete and
verified, so an interrupted download never leaves a file that looks good.
"""
from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
import warnings
from pathlib import Path

UNKNOWN = "unknown"  # a file whose sha256 this project could not record


class DownloadError(RuntimeError):
    """A download failed or returned a file with the wrong sha256."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_verified(url: str, dest: str | Path, expected_sha: str | None, *,
                      what: str, timeout: float = 60) -> tuple[Path, str]:
    """Download ``url`` to ``dest`` with a progress bar and check its sha256.

    Args:
      url: where to fetch from.
      dest: the final path (its folder is created).
      expected_sha: the file's sha256; ``None`` or ``'unknown'`` accepts any file with a warning.
      what: a name for the progress bar and messages.

    Returns:
      ``(dest, sha256)``.

    Raises:
      DownloadError: no connection, an HTTP error, or a sha256 mismatch (nothing is left at
        ``dest``); the message names the URL and where to put a file fetched by hand.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (known URLs)
            total = int(resp.headers.get("Content-Length") or 0) or None
            with open(part, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                              desc=f"download {what}") as bar:
                while block := resp.read(1 << 16):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        part.unlink(missing_ok=True)
        raise DownloadError(f"could not download {what} from {url} ({err}); fetch it by hand and "
                            f"put it at {dest}.") from err
    got = sha256_file(part)
    if expected_sha not in (None, UNKNOWN) and got != expected_sha:
        part.unlink(missing_ok=True)
        raise DownloadError(f"downloaded {what} from {url} but its sha256 is {got}, expected "
                            f"{expected_sha}: the server returned another file; download it by "
                            f"hand and put it at {dest}.")
    if expected_sha in (None, UNKNOWN):
        warnings.warn(f"{what}: no recorded sha256; downloaded file has sha256 {got} (unchecked)",
                      stacklevel=2)
    part.replace(dest)
    return dest, got
