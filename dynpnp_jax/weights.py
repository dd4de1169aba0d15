"""Registry of pretrained networks: name -> upstream files, converter, Flax module; the cache.

``load_network(name)`` returns a :class:`~dynpnp_jax.networks.Network`. It looks, in order:

1. in the cache of converted weights (orbax checkpoints under ``cache_dir()/weights``), keyed by
   the sha256 of the upstream file(s), so a changed upstream file is converted anew;
2. for the upstream file(s): a user-given ``path``, then ``$DYNPNP_UPSTREAM`` or
   ``../shared/upstream``, then ``cache_dir()/upstream``;
3. else downloads each upstream file from its public URL into ``cache_dir()/upstream`` (with a
   progress bar) and checks its sha256.

Registry files are checked against their recorded sha256 before conversion: a corrupt or
truncated file raises :class:`WeightsError` that says where to get a good copy. A file given with
``path`` that differs from the registry's hash is taken as the user's own weights (e.g. a model
retrained by the user) and cached under its own hash.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from . import paths
from .networks import Network


class WeightsError(RuntimeError):
    """A weight file is missing, corrupt, or cannot be converted."""


@dataclasses.dataclass(frozen=True)
class UpstreamFile:
    """One original weight file. ``relpath`` is relative to the upstream folder.

    ``sha256="unknown"`` marks a file this project could not obtain to hash (e.g. VDN): it is
    accepted as found, with a warning, and cached under its own hash.
    """

    relpath: str
    sha256: str
    url: str


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """A registry entry: where the weights come from and what network they make, as data.

    Attributes:
      name: registry name (``dncnn-s25``).
      files: the upstream file(s).
      convert: ``{relpath: local Path} -> variables`` (nested dict of numpy arrays).
      module: the Flax module the variables fit.
      kind: ``'residual'`` (the module predicts the noise) or ``'image'`` (the restored image).
      channels: image channels the module takes.
      multiple: height and width are padded to a multiple of this.
      noise_input: the module takes the noise level as a second input (FFDNet).
      receptive_field, tiling_exact: see :class:`~dynpnp_jax.networks.Network` (tiling rules).
      description, source, licence: for the weights table.
      converter_needs_torch: whether converting imports torch (running never does).
    """

    name: str
    files: tuple[UpstreamFile, ...]
    convert: Callable[[Mapping[str, Path]], Any]
    module: Any
    kind: str = "residual"
    channels: int = 1
    multiple: int = 1
    noise_input: bool = False
    receptive_field: int = 0
    tiling_exact: bool = True
    description: str = ""
    source: str = ""
    licence: str = ""
    converter_needs_torch: bool = False

    def network(self, variables) -> Network:
        """The :class:`Network` of this entry with ``variables``."""
        return Network(module=self.module, variables=variables, kind=self.kind,
                       channels=self.channels, multiple=self.multiple,
                       noise_input=self.noise_input, receptive_field=self.receptive_field,
                       tiling_exact=self.tiling_exact, name=self.name)


REGISTRY: dict[str, WeightSpec] = {}


def register(spec: WeightSpec) -> WeightSpec:
    """Add ``spec`` to the registry (names are unique)."""
    if spec.name in REGISTRY and REGISTRY[spec.name] != spec:
        raise ValueError(f"weights name {spec.name!r} is registered twice")
    REGISTRY[spec.name] = spec
    return spec


def available() -> list[str]:
    """Names that :func:`load_network` accepts."""
    return sorted(REGISTRY)


def get_spec(name: str) -> WeightSpec:
    if name not in REGISTRY:
        raise ValueError(
            f"unknown network name {name!r}; expected one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


from .download import UNKNOWN, DownloadError, download_verified, sha256_file  # noqa: E402


def _combined_key(hashes: list[str]) -> str:
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256("".join(hashes).encode()).hexdigest()


# ------------------------------------------------------------------------------- locating
def _candidate(base: Path, f: UpstreamFile) -> Path | None:
    for cand in (base / f.relpath, base / Path(f.relpath).name):
        if cand.is_file():
            return cand
    return None



def _check(path: Path, f: UpstreamFile, spec: WeightSpec) -> str:
    got = sha256_file(path)
    if f.sha256 == UNKNOWN:
        import warnings

        warnings.warn(f"{spec.name!r}: no recorded sha256 for {f.relpath}; using {path} "
                      f"(sha256 {got}) unchecked", stacklevel=3)
        return got
    if got != f.sha256:
        raise WeightsError(
            f"weight file {path} for {spec.name!r} is corrupt or not the released file: sha256 "
            f"{got}, expected {f.sha256}. Replace it with a fresh copy from {f.url} (or delete it "
            "and let load_network download it)")
    return got


def locate_upstream(spec: WeightSpec, path: str | Path | None = None, *,
                    download: bool = True) -> tuple[dict[str, Path], str]:
    """Find (or download) the upstream files of ``spec``.

    Returns ``({relpath: local path}, cache key)``. ``path`` may be the file itself (single-file
    networks) or a folder holding the files by relative path or by base name.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.exists():
            raise WeightsError(f"weights path {path} does not exist; pass the upstream file "
                               f"(or folder) of {spec.name!r}, see weights/README.md")
        found, hashes = {}, []
        for f in spec.files:
            p = path if (path.is_file() and len(spec.files) == 1) else (
                _candidate(path, f) if path.is_dir() else None)
            if p is None:
                raise WeightsError(f"{path} does not hold {f.relpath} (needed by {spec.name!r})")
            found[f.relpath] = p
            got = sha256_file(p)  # the user's own file: taken as is, keyed by its hash
            hashes.append(got)
            if (f.sha256 != UNKNOWN and got != f.sha256
                    and p.name == Path(f.relpath).name):  # the release's name and format
                warnings.warn(
                    f"weights path {p}: has the name and format of the released file of "
                    f"{spec.name!r} ({f.relpath}) but not its content: sha256 {got}, the release's {f.sha256}. "
                    f"It is used as your own weights (results record its sha256); if you meant "
                    f"the release, replace it with a fresh copy from {f.url}", stacklevel=3)
        return found, _combined_key(hashes)

    bases = [b for b in (paths.upstream_dir(), paths.cache_dir() / "upstream") if b is not None]
    found, hashes = {}, []
    for f in spec.files:
        p = next((c for c in (_candidate(b, f) for b in bases) if c is not None), None)
        if p is not None:
            hashes.append(_check(p, f, spec))
        elif download:
            try:
                p, got = download_verified(f.url, paths.cache_dir() / "upstream" / f.relpath,
                                           f.sha256, what=f"{spec.name}:{f.relpath}")
            except DownloadError as err:
                raise WeightsError(f"{err} Without internet, get that file elsewhere and pass "
                                   "its location with path=... (CLI: --weights PATH)") from err
            hashes.append(got)  # already verified while downloading
        else:
            raise WeightsError(
                f"upstream file {f.relpath} of {spec.name!r} not found in {[str(b) for b in bases]}"
                f" and download=False; get it from {f.url}")
        found[f.relpath] = p
    return found, _combined_key(hashes)


# ------------------------------------------------------------------------------- cache
def _cache_path(spec: WeightSpec, key: str) -> Path:
    return paths.cache_dir() / "weights" / f"{spec.name}-{key[:16]}"


def _checkpointer():
    """An orbax checkpointer for this process's own cache. In a multi-process job (see
    :mod:`dynpnp_jax.distributed`) every process reads and writes its cache alone, so orbax's
    cross-process barriers (device collectives over all processes) are turned off."""
    import jax
    import orbax.checkpoint as ocp

    if jax.process_count() == 1:
        return ocp.PyTreeCheckpointer()
    me = jax.process_index()
    opts = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.Checkpointer(ocp.PyTreeCheckpointHandler(multiprocessing_options=opts),
                            multiprocessing_options=opts)


def _save(tree: Any, where: Path, meta: dict, replace: bool = False) -> None:
    tmp = where.with_name(f"{where.name}.tmp-{os.getpid()}")  # processes may convert at once
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ckptr = _checkpointer()
    ckptr.save((tmp / "variables").absolute(), tree)
    meta = {**meta, "files_sha256": _file_hashes(tmp / "variables")}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if (where / "meta.json").is_file() and not replace:  # another process converted it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(where, ignore_errors=True)
    tmp.rename(where)


def _restore(where: Path) -> Any:
    tree = _checkpointer().restore((where / "variables").absolute())
    return _to_numpy(tree)


def _to_numpy(tree):
    import jax

    return jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float32), tree)


def convert(name: str, path: str | Path | None = None, *, download: bool = True,
            force: bool = False) -> Path:
    """Convert ``name``'s upstream weights into the cache (if not there yet); return its folder."""
    spec = get_spec(name)
    _check_path_arg(path)
    if path is None and not force and all(f.sha256 != UNKNOWN for f in spec.files):
        where = _cache_path(spec, _combined_key([f.sha256 for f in spec.files]))
        if (where / "meta.json").is_file():
            return where
    files, key = locate_upstream(spec, path, download=download)
    where = _cache_path(spec, key)
    if (where / "meta.json").is_file() and not force:
        return where
    try:
        variables = spec.convert(files)
    except WeightsError:
        raise
    except Exception as err:  # a readable file of the wrong layout
        raise WeightsError(f"could not convert {spec.name!r} from {list(files.values())}: {err}. "
                           "Is it the right file for this network?") from err
    variables = _to_numpy(variables)
    spec.network(variables).check_structure()  # shapes match model.init
    _save(variables, where, {"name": spec.name, "key": key,
                             "files": {k: str(v) for k, v in files.items()}}, replace=force)
    return where


def load_network(name: str, path: str | Path | None = None, *, download: bool = True) -> Network:
    """Load the pretrained network ``name`` (see :func:`available`), converting it if needed.

    Args:
      name: registry name, e.g. ``'dncnn-s25'``.
      path: the upstream file or folder to use instead of the registry's (the user's own
        weights of the same architecture are accepted).
      download: whether a missing upstream file may be downloaded.
    """
    spec = get_spec(name)
    _check_path_arg(path)
    where = convert(name, path, download=download)
    problem = _damage(where)
    if problem is None:
        try:
            with _quiet_stderr_on_failure():
                variables = _restore(where)
        except Exception as err:  # an older cache entry (no file hashes) that cannot be read
            problem = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        else:
            _record_hashes(where)
            return spec.network(variables)
    print(f"note: the converted weights of {name!r} in {where} are damaged ({problem}); "
          f"converting them again", file=sys.stderr)
    shutil.rmtree(where, ignore_errors=True)
    where = convert(name, path, download=download)
    return spec.network(_restore(where))


class _quiet_stderr_on_failure:
    """Holds back what is written to file descriptor 2 inside the block: replayed if the block
    succeeds, dropped if it raises (orbax's threads print a stream of 'Event loop is closed'
    tracebacks after a failed read, for a short while after it returns)."""

    def __enter__(self):
        import tempfile

        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            self._saved = None
            return self
        self._buf = tempfile.TemporaryFile()
        os.dup2(self._buf.fileno(), 2)
        return self

    def __exit__(self, exc_type, *rest):
        if self._saved is None:
            return False
        if exc_type is not None:
            import gc
            import time

            gc.collect()
            time.sleep(1.0)  # let orbax's threads finish printing into the buffer
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, 2)
        os.close(self._saved)
        if exc_type is None:
            self._buf.seek(0)
            held = self._buf.read()
            if held:
                os.write(2, held)
        self._buf.close()
        return False


def _check_path_arg(path) -> None:
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected the upstream weight file or folder as a str or "
                        f"pathlib.Path (or None for the registry's file), got "
                        f"{type(path).__name__} {path!r}. Fix: e.g. path='weights/sigma=25.mat'.")


def _file_hashes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _damage(where: Path) -> str | None:
    """What is wrong with a cache entry whose meta.json records its files' sha256 (None if
    nothing, or if it records none): checked before orbax reads it, since orbax's failures on a
    truncated file print a stream of asyncio tracebacks from its threads."""
    try:
        recorded = json.loads((where / "meta.json").read_text()).get("files_sha256")
    except (OSError, ValueError) as err:
        return f"meta.json unreadable: {err}"
    if not recorded:
        return None
    got = _file_hashes(where / "variables")
    for rel, sha in recorded.items():
        if rel not in got:
            return f"{rel} is missing"
        if got[rel] != sha:
            return f"{rel} changed (truncated or overwritten)"
    return None


def _record_hashes(where: Path) -> None:
    """Adds the files' sha256 to an older cache entry's meta.json (read fine just now)."""
    meta_path = where / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("files_sha256"):
            return
        meta["files_sha256"] = _file_hashes(where / "variables")
        tmp = meta_path.with_name(f".meta.json.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, meta_path)
    except OSError:
        pass  # a read-only cache stays as it is


# ------------------------------------------------------------------------------- entries
# The entries live beside their networks in dynpnp_jax/zoo/<family>.py, which import this module
# (a leaf: it imports no family); ``import dynpnp_jax`` imports the zoo and so fills REGISTRY.


def weights_table() -> str:
    """The registry as a Markdown table (for README.md and weights/README.md)."""
    rows = ["| name | network | upstream file(s) | sha256 | source | licence | convert needs torch |",
            "|---|---|---|---|---|---|---|"]
    for spec in sorted(REGISTRY.values(), key=lambda s: s.name):
        files = spec.files
        if len(files) == 1:
            f = files[0]
            where, sha = f"[`{f.relpath}`]({f.url})", f"`{f.sha256[:16]}…`"
        else:
            folder = str(Path(files[0].relpath).parent)
            where = f"`{folder}/` ({len(files)} files, [first]({files[0].url}))"
            sha = "per file, see `dynpnp_jax/zoo/`"
        rows.append(f"| `{spec.name}` | {spec.description} | {where} | {sha} | {spec.source} | "
                    f"{spec.licence} | {'yes' if spec.converter_needs_torch else 'no'} |")
    return "\n".join(rows)


def weights_files_table() -> str:
    """Every upstream file with its full sha256 and URL (for weights/README.md)."""
    rows = ["| name | upstream file | sha256 | URL |", "|---|---|---|---|"]
    for spec in sorted(REGISTRY.values(), key=lambda s: s.name):
        for f in spec.files:
            rows.append(f"| `{spec.name}` | `{f.relpath}` | `{f.sha256}` | {f.url} |")
    return "\n".join(rows)
