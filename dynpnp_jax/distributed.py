"""Many processes (hosts): join a JAX multi-process job, split the work, gather the results.

JAX's own multi-controller runtime is the engine: :func:`initialize` calls
``jax.distributed.initialize`` (the coordination service runs in process 0), and a
:class:`Cluster` moves small Python objects between the processes through that service's
key-value store -- never through device collectives, so it works the same on CPU, GPU and TPU
and every wait can stop on a failure instead of hanging:

* a process that fails posts the reason (:meth:`Cluster.fail`); every other process stops at its
  next check (between batches, and while waiting) with ``process K: <reason>`` (process 0, whose
  exit ends the coordination service, first waits a little for the others to say so);
* a wait gives up when the process it waits for made no progress (no batch finished) for
  ``timeout_s`` seconds (``--distributed-timeout``);
* a process that dies stops sending heartbeats, and JAX ends the others ("the JAX distributed
  service detected fatal errors ... another task died") after ``heartbeat_s`` seconds.

The evaluation (``dynpnp_jax.eval``) uses it: every process restores its share of the batches
(batch ``j`` goes to process ``j mod N``, spread over that process's local devices), and
process 0 gathers the per-image scores and writes the one report. A batch holds the same images
whatever the number of processes, so the numbers do not depend on it.

When the job is joined (``python -m dynpnp_jax.eval`` decides with :func:`settings`):

* ``--coordinator HOST:PORT --num-processes N --process-id I`` (or the environment variables
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``);
* a SLURM job step of several tasks (``srun``: ``SLURM_STEP_NUM_TASKS`` > 1), an Open MPI
  launch of several ranks, or a GKE TPU slice of several hosts (``TPU_WORKER_HOSTNAMES``):
  JAX reads the coordinator, the process count and id from that environment;
* ``--distributed on``: JAX's own detection even without those variables (a Cloud TPU VM pod
  slice, where JAX asks the TPU metadata server). ``--distributed off`` never joins.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import re
import sys
import threading
import time
from typing import Any, Callable, Mapping

__all__ = ["Cluster", "DistributedError", "Settings", "settings", "initialize", "local",
           "DEFAULT_TIMEOUT_S", "ENV_FLAGS"]

DEFAULT_TIMEOUT_S = 1800.0
#: The most processes a job may have: the coordination service keeps state per process from
#: the start (10^8 processes took 9.4 GB before anything ran), and the largest TPU pod slices
#: have about a thousand hosts.
MAX_PROCESSES = 4096
#: How often (seconds) a waiting process says what it waits for.
SAY_EVERY_S = 5.0
ENV_FLAGS = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
             "process_id": "JAX_PROCESS_ID"}
_PART = 4 << 20  # values above this many bytes travel in parts (gRPC message limits)


class DistributedError(RuntimeError):
    """A multi-process failure: another process failed or stalled, or the job could not be
    joined. The message names the process and the reason."""


# ------------------------------------------------------------------------------ settings
@dataclasses.dataclass(frozen=True)
class Settings:
    """How (and whether) to join: ``join`` False means one process. ``None`` fields are left to
    JAX's cluster detection (SLURM, Open MPI, Cloud TPU)."""

    join: bool = False
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    reason: str = "one process"
    timeout_s: float = DEFAULT_TIMEOUT_S


def _env_cluster(env: Mapping[str, str]) -> str | None:
    """The multi-process launcher named by the environment, or None."""
    def count(name):
        try:
            return int(env.get(name, "1"))
        except ValueError:
            return 1

    if count("SLURM_STEP_NUM_TASKS") > 1 and "SLURM_PROCID" in env:
        return f"SLURM job step of {env['SLURM_STEP_NUM_TASKS']} tasks"
    if count("OMPI_COMM_WORLD_SIZE") > 1:
        return f"Open MPI launch of {env['OMPI_COMM_WORLD_SIZE']} ranks"
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    if len([h for h in hosts.split(",") if h.strip()]) > 1:
        return f"TPU slice of {len(hosts.split(','))} hosts"
    return None


def _check_coordinator(text: str, where: str) -> str:
    host, sep, port = text.rpartition(":")
    ok = bool(sep and host) and port.isdigit() and 0 < int(port) < 65536
    if not ok:
        raise ValueError(f"{where} {text!r}: expected HOST:PORT, the address of process 0 and a "
                         f"free port, the same on every process (e.g. 10.0.0.1:8476). Fix: pass "
                         f"it in that form.")
    return text


def settings(coordinator: str | None = None, num_processes: int | None = None,
             process_id: int | None = None, *, mode: str = "auto",
             timeout_s: float = DEFAULT_TIMEOUT_S, env: Mapping[str, str] | None = None
             ) -> Settings:
    """Whether and how to join, from the command-line values and the environment; checks
    everything before anything connects. Raises ValueError naming the argument and the fix."""
    env = os.environ if env is None else env
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"--distributed {mode!r}: expected auto, on or off")
    if not (timeout_s > 0):
        raise ValueError(f"--distributed-timeout {timeout_s}: expected seconds > 0. Fix: e.g. "
                         f"{DEFAULT_TIMEOUT_S:.0f} (one batch must finish within it).")
    given = {k: v for k, v in (("coordinator", coordinator), ("num_processes", num_processes),
                               ("process_id", process_id)) if v is not None}
    flag = {"coordinator": "--coordinator", "num_processes": "--num-processes",
            "process_id": "--process-id"}
    if mode == "off":
        if given:
            raise ValueError(f"--distributed off: {', '.join(flag[k] for k in given)} join a "
                             f"multi-process job. Fix: leave them out, or drop --distributed off.")
        return Settings(reason="--distributed off", timeout_s=timeout_s)
    values, source = dict(given), {k: flag[k] for k in given}
    for key, var in ENV_FLAGS.items():
        if key not in values and env.get(var, "").strip():
            text = env[var].strip()
            if key == "coordinator":
                values[key] = text
            else:
                try:
                    values[key] = int(text)
                except ValueError:
                    raise ValueError(f"environment variable {var}={text!r}: expected an "
                                     f"integer. Fix: set it to a number, or unset it.") from None
            source[key] = f"${var}"
    if "coordinator" in values:
        _check_coordinator(values["coordinator"], source["coordinator"])
    n, i = values.get("num_processes"), values.get("process_id")
    if n is not None and n < 1:
        raise ValueError(f"{source['num_processes']} {n}: expected the number of processes of "
                         f"the job (>= 1). Fix: pass a positive count.")
    if n is not None and n > MAX_PROCESSES:
        raise ValueError(f"{source['num_processes']} {n}: expected at most {MAX_PROCESSES} "
                         f"processes (one per host; the coordination service keeps state per "
                         f"process from the start, and the largest TPU pod slices have about a "
                         f"thousand hosts). Fix: pass the number of processes you start.")
    if i is not None and i < 0:
        raise ValueError(f"{source['process_id']} {i}: expected this process's number, 0 to "
                         f"N-1. Fix: pass a number >= 0.")
    if (n is None) != (i is None):
        have, need = ("num_processes", "process_id") if i is None else ("process_id",
                                                                         "num_processes")
        shown = values[have]
        what = ("this process's number, 0 to N-1, different on every process"
                if need == "process_id" else "the job's number of processes, the same on every "
                                              "process")
        raise ValueError(f"{source[have]} {shown}: needs {flag[need]} too ({what}). Fix: pass "
                         f"{flag[need]} (or set ${ENV_FLAGS[need]}).")
    if n is not None:
        if not i < n:
            raise ValueError(f"{source['process_id']} {i}: out of range for "
                             f"{source['num_processes']} {n}; processes are numbered 0 to "
                             f"{n - 1}. Fix: give each process a different number in 0..{n - 1}.")
        if n == 1:
            return Settings(reason=f"{source['num_processes']} 1", timeout_s=timeout_s)
        if "coordinator" not in values:
            raise ValueError(f"{source['num_processes']} {n}: needs --coordinator HOST:PORT "
                             f"(process 0's address and a free port, the same on every "
                             f"process). Fix: pass --coordinator (or set "
                             f"$JAX_COORDINATOR_ADDRESS).")
        return Settings(True, values["coordinator"], n, i,
                        reason=f"{source['num_processes']} {n}", timeout_s=timeout_s)
    launcher = _env_cluster(env)
    if mode == "on" or launcher or "coordinator" in given:
        why = ("--distributed on" if mode == "on" else launcher or "--coordinator")
        return Settings(True, values.get("coordinator"), None, None, reason=why,
                        timeout_s=timeout_s)
    return Settings(reason="one process", timeout_s=timeout_s)


# ------------------------------------------------------------------------------ the cluster
def _missing(err: Exception) -> bool:
    text = str(err)
    return "NOT_FOUND" in text or "DEADLINE_EXCEEDED" in text


class Cluster:
    """This process's place in the job, and the messages between processes.

    On one process every method is trivial (``share`` returns ``[obj]``, the others do
    nothing). Keys live under a namespace that :meth:`begin` renews, so one job can run several
    evaluations one after the other (every process must call the same methods in the same
    order)."""

    def __init__(self, process_id: int = 0, num_processes: int = 1, client: Any = None, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, poll_s: float = 0.2):
        self.process_id, self.num_processes = int(process_id), int(num_processes)
        self.client, self.timeout_s, self.poll_s = client, float(timeout_s), float(poll_s)
        self._runs, self._ns, self._progress = 0, "dynpnp/0", 0
        self._sent: dict[str, int] = {}
        self._recv: dict[str, dict[int, int | None]] = {}
        self._seen: dict[int, tuple[str | None, float]] = {}
        self._said = 0.0
        if self.num_processes > 1 and client is None:
            raise ValueError("a Cluster of several processes needs the JAX distributed client")

    # -------------------------------------------------------------------- basics
    @property
    def is_main(self) -> bool:
        """Process 0: gathers the results and writes the report."""
        return self.process_id == 0

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1

    def __repr__(self) -> str:
        return f"Cluster(process {self.process_id} of {self.num_processes})"

    def owns(self, j: int) -> bool:
        """Whether work item ``j`` (a batch) is this process's: ``j mod N``."""
        return j % self.num_processes == self.process_id

    def begin(self, what: str = "run") -> None:
        """A fresh key namespace (call it at the same point on every process)."""
        self._runs += 1
        self._ns = f"dynpnp/{what}-{self._runs}"
        self._sent, self._recv, self._seen = {}, {}, {}

    def _key(self, *parts) -> str:
        return "/".join((self._ns,) + tuple(str(p) for p in parts))

    # -------------------------------------------------------------------- raw store
    def _try_get(self, key: str) -> bytes | None:
        try:
            return self.client.key_value_try_get_bytes(key)
        except Exception as err:  # the client raises JaxRuntimeError(NOT_FOUND)
            if _missing(err):
                return None
            raise self._lost(err) from err

    def _lost(self, err: Exception) -> DistributedError:
        return DistributedError(
            f"process {self.process_id}: lost the connection to the JAX coordination service "
            f"(process 0): {str(err).splitlines()[0]}. Process 0 has probably failed or "
            f"exited; see its log.")

    def _set(self, key: str, value: bytes, overwrite: bool = False) -> None:
        try:
            self.client.key_value_set_bytes(key, value, allow_overwrite=overwrite)
        except Exception as err:
            raise self._lost(err) from err

    def _put(self, key: str, obj) -> None:
        data = pickle.dumps(obj, protocol=4)
        if len(data) <= _PART:
            self._set(key, b"D" + data)
            return
        parts = [data[s:s + _PART] for s in range(0, len(data), _PART)]
        for n, part in enumerate(parts):
            self._set(f"{key}#{n}", part)
        self._set(key, b"P" + str(len(parts)).encode())  # written last: all parts are there

    def _decode(self, key: str, raw: bytes):
        if raw[:1] == b"D":
            data = raw[1:]
        else:
            chunks = []
            for n in range(int(raw[1:])):
                part = self._try_get(f"{key}#{n}")
                if part is None:
                    raise DistributedError(f"process {self.process_id}: part {n} of {key} is "
                                           f"missing from the coordination service")
                chunks.append(part)
                self._delete(f"{key}#{n}")
            data = b"".join(chunks)
        self._delete(key)
        return pickle.loads(data)

    def _delete(self, key: str) -> None:
        try:
            self.client.key_value_delete(key)
        except Exception:  # freeing memory only
            pass

    # -------------------------------------------------------------------- failure, progress
    def fail(self, message: str) -> None:
        """Tells the other processes that this one failed (the first failure is kept)."""
        if not self.distributed:
            return
        try:
            self.client.key_value_set("dynpnp/abort", f"process {self.process_id}: {message}")
        except Exception:
            pass  # another process failed first, or the coordinator is gone: both end the job

    def acknowledge(self) -> None:
        """This process has reported the failure and is about to exit (see :meth:`linger`)."""
        if self.distributed:
            try:
                self.client.key_value_set(f"dynpnp/ack/{self.process_id}", "1")
            except Exception:
                pass

    def linger(self, seconds: float) -> None:
        """Process 0, failing: waits (at most ``seconds``) until every other process has
        acknowledged the failure, since the coordination service ends with process 0 and JAX
        then terminates the others before they can say why they stopped."""
        if not (self.distributed and self.is_main):
            return
        end = time.monotonic() + seconds
        pending = set(range(1, self.num_processes))
        while pending and time.monotonic() < end:
            for pid in list(pending):
                try:
                    self.client.key_value_try_get(f"dynpnp/ack/{pid}")
                    pending.discard(pid)
                except Exception:
                    pass
            time.sleep(self.poll_s / 2)

    def check(self) -> None:
        """Raises DistributedError when another process has failed."""
        if not self.distributed:
            return
        try:
            msg = self.client.key_value_try_get("dynpnp/abort")
        except Exception as err:
            if _missing(err):
                return
            raise self._lost(err) from err
        raise DistributedError(f"stopped: {msg}")

    def progress(self) -> None:
        """Marks progress (a batch done): waits on this process restart their clock."""
        if self.distributed:
            self._progress += 1
            self._set(self._key("progress", self.process_id), str(self._progress).encode(),
                      overwrite=True)

    def _stalled(self, pid: int, what: str) -> None:
        """Raises when ``pid`` made no progress for ``timeout_s`` seconds."""
        now = time.monotonic()
        value = self._try_get(self._key("progress", pid))
        last, since = self._seen.get(pid, (None, now))
        if value != last or pid not in self._seen:
            self._seen[pid] = (value, now)
            return
        if now - since > self.timeout_s:
            raise DistributedError(
                f"process {self.process_id} waited {now - since:.0f} s for {what} from process "
                f"{pid}, which made no progress in that time (no batch finished): it is stuck "
                f"or far slower than the others. Fix: see process {pid}'s log; for batches "
                f"slower than that, raise --distributed-timeout (now {self.timeout_s:.0f} s).")

    def _say_waiting(self, t0: float, what: str) -> None:
        """Every :data:`SAY_EVERY_S` seconds of a wait, one line on stderr saying what for."""
        now = time.monotonic()
        if now - t0 < SAY_EVERY_S or now - self._said < SAY_EVERY_S:
            return
        self._said = now
        print(f"process {self.process_id}: waiting {now - t0:.0f} s for {what} (gives up "
              f"after {self.timeout_s:.0f} s without progress: --distributed-timeout)",
              file=sys.stderr, flush=True)

    def _wait(self, key: str, pid: int, what: str):
        """The object at ``key`` (posted by ``pid``), waiting for it."""
        self._seen.pop(pid, None)
        t0 = time.monotonic()
        while True:
            raw = self._try_get(key)
            if raw is not None:
                return self._decode(key, raw)
            self.check()
            self._stalled(pid, what)
            self._say_waiting(t0, f"{what} from process {pid}")
            time.sleep(self.poll_s)

    # -------------------------------------------------------------------- collectives
    def share(self, name: str, obj) -> list | None:
        """Every process gives ``obj``; process 0 gets them all (in process order), the others
        None."""
        if not self.distributed:
            return [obj]
        if not self.is_main:
            self._put(self._key(name, self.process_id), obj)
            self.progress()
            return None
        out = [obj]
        for pid in range(1, self.num_processes):
            out.append(self._wait(self._key(name, pid), pid, f"{name!r}"))
        return out

    def publish(self, name: str, obj=True) -> None:
        """Process 0 posts ``obj`` for :meth:`receive`."""
        if self.distributed and self.is_main:
            for pid in range(1, self.num_processes):  # one copy per reader (each deletes it)
                self._put(self._key(name, "to", pid), obj)
            self.progress()

    def receive(self, name: str):
        """What process 0 published under ``name`` (other processes only)."""
        if not self.distributed or self.is_main:
            raise RuntimeError("receive() is for processes other than 0")
        return self._wait(self._key(name, "to", self.process_id), 0, f"{name!r}")

    # -------------------------------------------------------------------- streams
    def send(self, stream: str, obj) -> None:
        """A process other than 0 sends one item of ``stream`` to process 0."""
        k = self._sent.get(stream, 0)
        self._put(self._key(stream, self.process_id, k), obj)
        self._sent[stream] = k + 1
        self.progress()

    def close(self, stream: str) -> None:
        """This process sends nothing more on ``stream``."""
        if self.distributed and not self.is_main:
            self._put(self._key(stream, self.process_id, "end"), self._sent.get(stream, 0))
            self.progress()

    def collect(self, stream: str, handle: Callable[[int, Any], None], *, block: bool) -> None:
        """Process 0: ``handle(pid, item)`` for every item of ``stream`` that has arrived; with
        ``block``, until every other process has closed it."""
        if not self.distributed:
            return
        state = self._recv.setdefault(stream, {pid: 0 for pid in range(1, self.num_processes)})
        ends: dict[int, int] = {}
        self._seen = {}
        t0 = time.monotonic()
        while True:
            self.check()
            for pid, nxt in state.items():
                while nxt is not None:
                    raw = self._try_get(self._key(stream, pid, nxt))
                    if raw is None:
                        break
                    handle(pid, self._decode(self._key(stream, pid, nxt), raw))
                    nxt += 1
                    state[pid] = nxt
                if nxt is None:
                    continue
                if pid not in ends:
                    raw = self._try_get(self._key(stream, pid, "end"))
                    if raw is not None:
                        ends[pid] = self._decode(self._key(stream, pid, "end"), raw)
                if pid in ends and nxt >= ends[pid]:
                    state[pid] = None
            pending = [pid for pid, nxt in state.items() if nxt is not None]
            if not block or not pending:
                return
            for pid in pending:
                self._stalled(pid, f"the results of {stream!r}")
            shown = ", ".join(map(str, pending[:8])) + (", ..." if len(pending) > 8 else "")
            self._say_waiting(t0, f"the results of {stream!r} from process(es) {shown}")
            time.sleep(self.poll_s)


def local() -> Cluster:
    """One process: everything stays here."""
    return Cluster()


_CURRENT: Cluster | None = None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, mode: str = "auto",
               timeout_s: float = DEFAULT_TIMEOUT_S, heartbeat_s: float | None = None,
               config: Settings | None = None) -> Cluster:
    """Joins the JAX job (``jax.distributed.initialize``) when :func:`settings` says so, and
    returns this process's :class:`Cluster` (one process: :func:`local`). Call it before
    anything else uses JAX. Once joined, later calls return the same cluster (JAX joins one
    job per process).

    ``timeout_s`` bounds how long the processes wait for each other to connect and for a
    process to finish a batch; ``heartbeat_s`` (default ``min(timeout_s, 100)``) how long a
    dead process goes unnoticed. Raises ValueError for bad values (before connecting) and
    DistributedError when joining fails."""
    global _CURRENT
    if _CURRENT is not None:
        return _CURRENT
    cfg = config or settings(coordinator, num_processes, process_id, mode=mode,
                             timeout_s=timeout_s)
    if not cfg.join:
        return Cluster(timeout_s=cfg.timeout_s)
    import jax
    from jax._src import distributed as jax_distributed

    heartbeat = int(max(2, round(heartbeat_s if heartbeat_s is not None
                                 else min(cfg.timeout_s, 100.0))))
    where = cfg.coordinator or "(from the environment)"
    joined = threading.Event()

    def say():  # jax.distributed.initialize blocks until every process has connected
        t0 = time.monotonic()
        me = "" if cfg.process_id is None else f"process {cfg.process_id}: "
        whom = (f"the other {cfg.num_processes - 1} process(es) to connect to {where}"
                if cfg.process_id == 0 else f"the coordinator {where} (process 0) to answer")
        while not joined.wait(SAY_EVERY_S):
            print(f"{me}waiting {time.monotonic() - t0:.0f} s for {whom} "
                  f"(--distributed-timeout {cfg.timeout_s:.0f} s)", file=sys.stderr, flush=True)

    threading.Thread(target=say, name="dynpnp-join-wait", daemon=True).start()
    try:
        if jax_distributed.global_state.client is None:
            jax.distributed.initialize(cfg.coordinator, cfg.num_processes, cfg.process_id,
                                       initialization_timeout=int(max(1, cfg.timeout_s)),
                                       heartbeat_timeout_seconds=heartbeat)
    except Exception as err:  # JAX raises ValueError/RuntimeError/JaxRuntimeError
        joined.set()
        who = ("" if cfg.process_id is None else
               f" as process {cfg.process_id} of {cfg.num_processes}")
        raise DistributedError(
            f"joining the JAX multi-process job ({cfg.reason}) at coordinator {where}{who} "
            f"failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}. Fix: "
            f"start every process with the same --coordinator HOST:PORT (process 0's address, "
            f"a free port) and --num-processes, each with its own --process-id, within "
            f"--distributed-timeout ({cfg.timeout_s:.0f} s) of each other.") from err
    joined.set()
    client = jax_distributed.global_state.client
    _CURRENT = Cluster(jax.process_index(), jax.process_count(), client,
                       timeout_s=cfg.timeout_s)
    return _CURRENT


# ------------------------------------------------------------------------------ aborts
_FATAL_START = (b"F", b"*", b"t")
_FATAL = re.compile(rb"^(F\d{4} \d\d:\d\d:\d\d|\*\*\* Check failure stack trace|"
                    rb"terminate called after throwing)")
SUPERVISOR_FD = "DYNPNP_SUPERVISOR_FD"  # where a supervised process names its temporary folders


def note_temporary(path) -> None:
    """A supervised process (see :func:`supervise`) names a folder to delete if it aborts."""
    fd = os.environ.get(SUPERVISOR_FD)
    if fd:
        try:
            os.write(int(fd), f"{path}\n".encode())
        except (OSError, ValueError):
            pass


def _abort_cause(text: str, cfg: Settings) -> str:
    where = cfg.coordinator or "(from the environment)"
    if "stopped sending heartbeats" in text:
        m = re.search(r"stopped sending heartbeats\):\s*([\d\s,]+)", text)
        who = ", ".join(m.group(1).split()) if m else "another"
        return (f"process(es) {who} stopped sending heartbeats: died, were killed or hang. Fix: "
                f"see that process's log")
    if "RegisterTask" in text or ("DEADLINE_EXCEEDED" in text and "connect" in text.lower()):
        if cfg.process_id == 0:
            return (f"not every one of the {cfg.num_processes} processes connected to {where} "
                    f"within --distributed-timeout ({cfg.timeout_s:.0f} s). Fix: start them "
                    f"all with the same --coordinator and --num-processes")
        return (f"the coordinator {where} did not answer within --distributed-timeout "
                f"({cfg.timeout_s:.0f} s). Fix: start process 0 first, at that address and a "
                f"free port")
    if "UNAVAILABLE" in text or "failed to connect" in text:
        return (f"the connection to the coordinator {where} (process 0) was lost: it died or "
                f"exited. Fix: see process 0's log")
    first = next((ln for ln in text.splitlines() if _FATAL.match(ln.encode())), "")
    return "XLA: " + (first.split("] ", 1)[-1][:200] or "aborted")


def supervise(cfg: Settings, *, in_child: Callable | None = None,
              in_parent: Callable | None = None) -> int | None:
    """Runs the rest of this process's work in a forked child and watches it (POSIX only).

    JAX's distributed runtime ends a process with an XLA abort (SIGABRT, a C++ stack trace,
    status 134) when another process stops sending heartbeats or the coordinator cannot be
    reached: nothing in Python can catch that. The parent passes the child's stderr through,
    drops the C++ trace, deletes the temporary folders the child named
    (:func:`note_temporary`) and ends with one line naming the cause, status 1.

    Returns None in the child (go on), the exit status in the parent; None without forking
    where that is not possible (no ``os.fork``, threads already running,
    ``$DYNPNP_NO_SUPERVISOR=1``)."""
    import shutil
    import signal

    others = [t for t in threading.enumerate()
              if t is not threading.main_thread() and t.name != "dynpnp-interrupt"]
    if not hasattr(os, "fork") or os.environ.get("DYNPNP_NO_SUPERVISOR") == "1" or others:
        return None
    r, w = os.pipe()
    r2, w2 = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: stderr into the pipe, the rest as before
        os.close(r)
        os.close(r2)
        os.dup2(w, 2)
        os.close(w)
        os.environ[SUPERVISOR_FD] = str(w2)
        if in_child is not None:
            in_child()
        return None
    os.close(w)
    os.close(w2)
    if in_parent is not None:
        in_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the child too
    out = sys.stderr.buffer
    tail, fatal, line, deciding = b"", False, b"", False
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        for piece in re.split(rb"(?<=[\n\r])", chunk):
            if not piece:
                continue
            if fatal:
                tail = (tail + piece)[-20000:]
                continue
            at_start = not line
            line += piece
            if at_start:
                deciding = piece[:1] in _FATAL_START
            ended = piece.endswith((b"\n", b"\r"))
            if deciding and not ended:
                continue  # hold a line that may start an abort until it ends
            if deciding and _FATAL.match(line):
                fatal, tail = True, (tail + line)[-20000:]
            else:
                done = line if deciding else piece
                out.write(done)
                out.flush()
                tail = (tail + done)[-20000:]
            if ended:
                line, deciding = b"", False
    if line and not fatal:
        out.write(line)
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    with os.fdopen(r2, "rb") as f:
        named = f.read().decode(errors="replace").splitlines()
    for path in named:
        if path.endswith(f"-{pid}") and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
    if fatal or rc == -signal.SIGABRT:
        me = (f"process {cfg.process_id} of {cfg.num_processes}" if cfg.process_id is not None
              else "this process")
        cause = _abort_cause(tail.decode(errors="replace"), cfg)
        print(f"error: {me}: the JAX distributed runtime aborted it (an XLA abort, which Python "
              f"cannot catch; nothing was written): {cause}.", file=sys.stderr, flush=True)
        return 1
    return rc if rc >= 0 else 128 - rc
