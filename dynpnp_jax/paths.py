"""Where things live: the user cache, the shared data/upstream folders.

Nothing here is written into the repository: converted weights and downloads go to the cache
(``$DYNPNP_CACHE`` or ``~/.cache/dynpnp_jax``); the read-only ``shared/`` folder beside a
checkout is only read.
"""
from __future__ import annotations

import os
from pathlib import Path

_PKG_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The writable cache root (``$DYNPNP_CACHE``, else ``~/.cache/dynpnp_jax``)."""
    root = os.environ.get("DYNPNP_CACHE")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "dynpnp_jax"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_dir() -> Path | None:
    """The read-only ``shared/`` folder: ``$DYNPNP_SHARED``, else ``../shared`` beside the checkout
    (or beside the working directory). ``None`` when there is none."""
    env = os.environ.get("DYNPNP_SHARED")
    if env:
        return Path(env).expanduser()
    for cand in (_PKG_ROOT.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"):
        if (cand / "data").is_dir() or (cand / "upstream").is_dir():
            return cand
    return None


def upstream_dir() -> Path | None:
    """Folder of the original (unconverted) weight files: ``$DYNPNP_UPSTREAM`` or ``shared/upstream``."""
    env = os.environ.get("DYNPNP_UPSTREAM")
    if env:
        return Path(env).expanduser()
    shared = shared_dir()
    return shared / "upstream" if shared is not None and (shared / "upstream").is_dir() else None


def data_dir() -> Path | None:
    """Folder of test images: ``$DYNPNP_DATA`` or ``shared/data``."""
    env = os.environ.get("DYNPNP_DATA")
    if env:
        return Path(env).expanduser()
    shared = shared_dir()
    return shared / "data" if shared is not None and (shared / "data").is_dir() else None


# ------------------------------------------------------------------------------ output places
def _real(path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies inside it (both real paths)."""
    return a == b or b in a.parents


def repo_root() -> Path | None:
    """The source checkout this package runs from (None for an installed package)."""
    return _PKG_ROOT if (_PKG_ROOT / "pyproject.toml").is_file() else None


def protected_places() -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """``(folders no output may be or contain, input folders no output may even lie in)``, each
    a list of ``(path, what it is)``."""
    places = [(repo_root(), "the repository")] if repo_root() is not None else []
    places += [(Path.cwd(), "the current directory"), (Path.home(), "your home directory"),
               (Path("/"), "the file system root")]
    env = os.environ.get("DYNPNP_CACHE")
    places.append((Path(env).expanduser() if env else Path.home() / ".cache" / "dynpnp_jax",
                   "the weights/data cache"))
    inputs = []
    for get, what in ((data_dir, "the data folder"), (upstream_dir, "the upstream weights folder")):
        p = get()
        if p is not None:
            inputs.append((p, what))
    return places, inputs


def check_output_place(out, arg: str, inputs=(), *, kind: str = "folder") -> None:
    """Refuses an output that would destroy or pollute what a run reads.

    ``out`` (a folder to create or replace, ``kind='folder'``; or a file, ``kind='file'``) must
    not be, nor contain, the current directory, the home directory, the repository, the shared
    data, the cache or any of ``inputs`` (``(path, what)`` pairs: the data folder, the dataset's
    folders, the weights, the config file); nor lie inside an input folder. Raises ValueError
    naming ``arg``, what is in the way and the fix."""
    o = _real(out)
    places, shared_inputs = protected_places()
    inputs = [*inputs, *shared_inputs]
    everything = [(p, what, _real(p)) for p, what in [*inputs, *places] if p is not None]
    for p, what, r in sorted(everything, key=lambda e: e[2] != o):  # "is" before "contains"
        if _inside(r, o):
            rel = "is" if r == o else "contains"
            raise ValueError(
                f"{arg} {out}: {rel} {what} ({p}); writing the results there would replace or "
                f"delete it. Expected a new {kind} of its own. Fix: pass e.g. {arg} "
                f"results/run1{'.json' if kind == 'file' else ''}.")
    for p, what in inputs:
        if p is None or not Path(p).expanduser().is_dir():
            continue
        r = _real(p)
        if _inside(o, r):
            raise ValueError(
                f"{arg} {out}: lies inside {what} ({p}); results written there would mix with "
                f"(and be read as) inputs. Expected a {kind} outside the inputs. Fix: pass e.g. "
                f"{arg} results/run1{'.json' if kind == 'file' else ''}.")


def _file_state(path: Path):
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class OutputFile:
    """A file a CLI writes, checked before the run and written safely during it.

    Checked at construction (before any work): not a folder, its folder exists and is
    writable, not an input or a protected place (:func:`check_output_place`), and not an
    existing file unless ``overwrite``. :meth:`write` replaces the file atomically (a hidden
    temporary beside it, renamed over it) and never over something that appeared or changed
    since the run started or since it last wrote: then it writes to a free name beside it
    (``name-1.json``, ...) from then on, says so on stderr, and :attr:`written` tells where."""

    def __init__(self, path, arg: str, *, overwrite: bool = False, inputs=()):
        self.path, self.arg = Path(path).expanduser(), arg
        example = f"{arg} results/{self.path.name or 'run.json'}"
        check_output_place(self.path, arg, inputs, kind="file")
        if self.path.is_dir():
            raise ValueError(f"{arg} {path}: is a folder; expected the path of a file to write. "
                             f"Fix: pass e.g. {arg} {Path(path) / 'tune.json'}.")
        parent = self.path.parent
        if not parent.is_dir():
            raise ValueError(f"{arg} {path}: the folder {parent} does not exist; expected a file "
                             f"in an existing folder (checked now, before the run). Fix: mkdir "
                             f"-p {parent}, or pass e.g. {example}.")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"{arg} {path}: the folder {parent} is not writable. Fix: pass a "
                             f"path in a folder you can write to.")
        if self.path.exists() and not overwrite:
            raise ValueError(f"{arg} {path}: exists; expected a new file. Fix: pass another "
                             f"{arg}, or --overwrite to replace it.")
        self.written = self.path
        self._expect = _file_state(self.path)

    def _free_name(self) -> Path:
        stem, suffix = self.path.stem, self.path.suffix
        for n in range(1, 10000):
            cand = self.path.with_name(f"{stem}-{n}{suffix}")
            try:
                with open(cand, "x"):
                    return cand
            except FileExistsError:
                continue
        raise OSError(f"{self.arg} {self.path}: no free name beside it")

    def write(self, text: str) -> Path:
        import sys

        if _file_state(self.written) != self._expect:
            was = self.written
            self.written = self._free_name()
            print(f"warning: {self.arg} {was}: appeared or changed during the run (another "
                  f"run, or a file put there); it is left as it is and this run writes "
                  f"{self.written} instead", file=sys.stderr)
        tmp = self.written.with_name(f".{self.written.name}.partial-{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, self.written)
        self._expect = _file_state(self.written)
        return self.written
