"""Many processes and many devices: the eval's numbers do not depend on how the work is split.

* two processes on 127.0.0.1 (CPU, ``jax.distributed``) write the same results as one process,
  to the last digit, and a failing process ends the job instead of hanging;
* four (fake) local devices give the one-device table; batches are padded to a multiple of 4
  and the padding is never scored; the solver keeps no per-iteration images;
* the launch settings (flags, environment) and the message passing are checked without JAX.
"""
import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from dynpnp_jax import distributed as dist
from dynpnp_jax import eval as ev

ROOT = Path(__file__).resolve().parents[1]
# launcher variables that would make a subprocess join some other job
_LAUNCH_VARS = ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "OMPI_COMM_WORLD_SIZE",
                "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", *dist.ENV_FLAGS.values())


# ------------------------------------------------------------------------------ settings
@pytest.mark.parametrize("kwargs,env,expected", [
    (dict(process_id=1), {}, r"--process-id 1: needs --num-processes too"),
    (dict(num_processes=2), {}, r"--num-processes 2: needs --process-id too"),
    (dict(num_processes=2, process_id=2, coordinator="h:1"), {},
     r"--process-id 2: out of range for --num-processes 2; processes are numbered 0 to 1"),
    (dict(num_processes=2, process_id=1), {},
     r"--num-processes 2: needs --coordinator HOST:PORT"),
    (dict(coordinator="nohost", num_processes=2, process_id=0), {},
     r"--coordinator 'nohost': expected HOST:PORT"),
    (dict(coordinator="h:99999", num_processes=2, process_id=0), {}, r"expected HOST:PORT"),
    (dict(num_processes=2, process_id=0, mode="off"), {},
     r"--distributed off: --num-processes, --process-id join a multi-process job"),
    (dict(), {"JAX_NUM_PROCESSES": "two"}, r"JAX_NUM_PROCESSES='two': expected an integer"),
    (dict(process_id=3), {"JAX_NUM_PROCESSES": "2", "JAX_COORDINATOR_ADDRESS": "h:1"},
     r"--process-id 3: out of range for \$JAX_NUM_PROCESSES 2"),
    (dict(timeout_s=0), {}, r"--distributed-timeout 0: expected seconds > 0"),
])
def test_settings_refuse_bad_values(kwargs, env, expected):
    import re

    with pytest.raises(ValueError) as info:
        dist.settings(env=env, **kwargs)
    assert re.search(expected, str(info.value)), str(info.value)
    assert "Fix" in str(info.value) or "expected" in str(info.value)


def test_settings_decide_when_to_join():
    one = dist.settings(env={})
    assert not one.join and one.reason == "one process"
    assert not dist.settings(num_processes=1, process_id=0, env={}).join
    s = dist.settings("10.0.0.1:8476", 4, 3, env={})
    assert (s.join, s.coordinator, s.num_processes, s.process_id) == (True, "10.0.0.1:8476", 4, 3)
    s = dist.settings(env={"JAX_COORDINATOR_ADDRESS": "h:5", "JAX_NUM_PROCESSES": "2",
                           "JAX_PROCESS_ID": "1"})
    assert (s.join, s.coordinator, s.num_processes, s.process_id) == (True, "h:5", 2, 1)
    # launchers: JAX reads the coordinator, count and id from them
    for env, word in (({"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "3"}, "SLURM"),
                      ({"OMPI_COMM_WORLD_SIZE": "2"}, "Open MPI"),
                      ({"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3"}, "TPU slice")):
        s = dist.settings(env=env)
        assert s.join and s.num_processes is None and word in s.reason
        assert not dist.settings(env=env, mode="off").join
    # an sbatch script (no srun step) or a one-task step runs alone
    assert not dist.settings(env={"SLURM_NTASKS": "8", "SLURM_PROCID": "0"}).join
    assert not dist.settings(env={"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}).join
    assert dist.settings(env={}, mode="on").join  # JAX's own detection (Cloud TPU VM)


def test_cli_refuses_bad_distributed_flags(tmp_path, capsys):
    for extra, expected in ((["--process-id", "1"], "--process-id 1: needs --num-processes"),
                            (["--num-processes", "2", "--process-id", "5", "--coordinator",
                              "127.0.0.1:1"], "--process-id 5: out of range"),
                            (["--process-id", "-1"], "argument --process-id: expected this "
                                                     "process's number"),
                            (["--distributed-timeout", "0"], "argument --distributed-timeout")):
        with pytest.raises(SystemExit) as info:
            ev.main(["--dataset", "folder", "--data-dir", str(tmp_path), "--out",
                     str(tmp_path / "out"), *extra])
        assert info.value.code == 2
        assert expected in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ messages
class FakeStore:
    """The coordination service's key-value store, in memory (the client's method names)."""

    def __init__(self):
        self.d = {}

    def key_value_set_bytes(self, key, value, allow_overwrite=False):
        if key in self.d and not allow_overwrite:
            raise RuntimeError(f"ALREADY_EXISTS: {key}")
        self.d[key] = bytes(value)

    def key_value_set(self, key, value, allow_overwrite=False):
        self.key_value_set_bytes(key, value.encode(), allow_overwrite)

    def key_value_try_get_bytes(self, key):
        if key not in self.d:
            raise RuntimeError(f"NOT_FOUND: Config key {key} not found.")
        return self.d[key]

    def key_value_try_get(self, key):
        return self.key_value_try_get_bytes(key).decode()

    def key_value_delete(self, key):
        self.d.pop(key, None)


def _pair(timeout_s=60.0):
    store = FakeStore()
    a, b = (dist.Cluster(i, 2, store, timeout_s=timeout_s, poll_s=0.01) for i in (0, 1))
    a.begin()
    b.begin()
    return store, a, b


def test_streams_gather_every_item_once_and_free_the_store():
    store, p0, p1 = _pair()
    big = np.arange(3 << 20, dtype=np.float32)  # 12 MiB: travels in parts
    assert p1.share("hello", {"devices": 2}) is None
    assert p0.share("hello", {"devices": 1}) == [{"devices": 1}, {"devices": 2}]
    p1.send("s", [1, 2])
    got = []
    p0.collect("s", lambda pid, item: got.append((pid, item)), block=False)
    assert got == [(1, [1, 2])]
    p1.send("s", big)
    p1.close("s")
    p0.collect("s", lambda pid, item: got.append((pid, item)), block=True)
    assert len(got) == 2 and np.array_equal(got[1][1], big)
    p0.publish("done", 3)
    assert p1.receive("done") == 3
    assert not [k for k in store.d if "progress" not in k]  # read items are deleted
    assert p0.owns(0) and p1.owns(1) and p0.owns(2) and not p0.owns(3)


def test_a_failure_or_a_stall_stops_the_wait():
    store, p0, p1 = _pair(timeout_s=0.3)
    t = time.monotonic()
    with pytest.raises(dist.DistributedError, match="made no progress.*--distributed-timeout"):
        p0.share("hello", {})  # process 1 never answers
    assert time.monotonic() - t < 5
    p1.fail("--data-dir /x: no such folder")
    with pytest.raises(dist.DistributedError, match=r"stopped: process 1: --data-dir /x"):
        p0.collect("s", lambda *a: None, block=True)
    with pytest.raises(dist.DistributedError, match="stopped: process 1"):
        p1.check()  # every process sees the first failure
    p0.fail("second")  # ignored: the first failure is kept
    assert store.d["dynpnp/abort"] == b"process 1: --data-dir /x: no such folder"

    class Gone(FakeStore):
        def key_value_try_get_bytes(self, key):
            raise RuntimeError("UNAVAILABLE: failed to connect to all addresses")

    lost = dist.Cluster(1, 2, Gone(), poll_s=0.01)
    with pytest.raises(dist.DistributedError, match="lost the connection.*process 0"):
        lost.receive("done")


def test_plan_keeps_no_images_unless_asked():
    from dynpnp_jax.data.protocols import Problem

    probs = [Problem(f"p{i}", np.zeros((8, 8 + 8 * (i == 2), 1), np.float32), None, {})
             for i in range(5)]
    _, mode, cfg, batches = ev._plan(probs, {"mode": "gradient", "iters": 2}, 2)
    assert mode == "gradient" and cfg.keep_images is False
    assert batches == [(False, [0, 1]), (False, [3, 4]), (False, [2])]  # by shape, then batch
    _, _, cfg, _ = ev._plan(probs, {"mode": "gradient", "iters": 2, "keep_images": True}, 2)
    assert cfg.keep_images is True
    _, mode, cfg, batches = ev._plan(probs, {"mode": "input"}, 8)
    assert cfg is None and batches == [(False, [i]) for i in range(5)]


# ------------------------------------------------------------------------------ real processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cache, **extra):
    drop = (*_LAUNCH_VARS, "XLA_FLAGS", "DYNPNP_NO_COMPILE_CACHE", "DYNPNP_DATA")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(DYNPNP_CACHE=str(cache), PYTHONPATH=str(ROOT), **extra)
    return env


# Runs the CLI, recording what every restore call got (batch, devices, kept images).
SPY = """
import json, sys
import dynpnp_jax as dp
from dynpnp_jax import eval as ev
calls, restore = [], dp.restore
def spy(params, y, cfg, **kw):
    out, traj = restore(params, y, cfg, **kw)
    sharding = getattr(y, "sharding", None)
    calls.append({"batch": int(y.shape[0]), "out": int(out.shape[0]),
                  "devices": len(sharding.device_set) if sharding is not None else 1,
                  "keep_images": cfg.keep_images,
                  "images": traj.x is not None or traj.v is not None})
    return out, traj
dp.restore = spy
try:
    ev.main(sys.argv[1:])
finally:
    print("CALLS " + json.dumps(calls))
"""


def _start(argv, env):
    return subprocess.Popen([sys.executable, "-c", SPY, *argv], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(procs, timeout=240):
    out, deadline = [], time.monotonic() + timeout
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("a process of the job hung (killed after "
                                 f"{timeout} s)") from None
        calls = [json.loads(line[6:]) for line in stdout.splitlines() if line.startswith("CALLS ")]
        out.append((p.returncode, stdout, stderr, calls[0] if calls else None))
    return out


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Six Set12 crops (five 32x48 and one 48x32: batches of 5 and 1, not multiples of 2 or 4),
    a cache, the arguments and the one-process, one-device reference run."""
    src = require_shared("data", "set12")
    require_shared("upstream", "dncnn", "sigma=25.mat")
    root = tmp_path_factory.mktemp("dist")
    crops = root / "crops"
    crops.mkdir()
    for i, name in enumerate(("01", "02", "03", "04", "05", "06")):
        a = np.asarray(Image.open(src / f"{name}.png"))
        Image.fromarray(a[40:72, 60:108] if i < 5 else a[40:88, 60:92]).save(crops / f"c{i}.png")
    args = ["--dataset", "folder", "--data-dir", str(crops), "--sigma", "25", "--method",
            "prior", "authors", "--iters", "2", "--save-images"]
    cache = root / "cache"
    t = time.monotonic()
    ((rc, _, err, calls),) = _finish([_start(args + ["--batch", "2", "--out",
                                                     str(root / "one")], _env(cache))])
    assert rc == 0, err[-3000:]
    print(f"one process, one device: {time.monotonic() - t:.1f} s")
    return {"root": root, "args": args, "cache": cache, "one": root / "one", "calls": calls}


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _numbers(res: dict) -> dict:
    """Every number of results.json that the split could change (all but the timings)."""
    return {m: {c: {k: v for k, v in r.items() if k != "seconds"} for c, r in per.items()}
            for m, per in res["methods"].items()}


def _rows(out: Path):
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def test_two_processes_write_the_one_process_results(job):
    port = _free_port()
    out = job["root"] / "two"
    flags = ["--batch", "2", "--out", str(out), "--coordinator", f"127.0.0.1:{port}",
             "--num-processes", "2", "--distributed-timeout", "120"]
    t = time.monotonic()
    procs = [_start(job["args"] + flags + ["--process-id", str(i)], _env(job["cache"]))
             for i in (0, 1)]
    (rc0, out0, err0, calls0), (rc1, out1, err1, calls1) = _finish(procs)
    print(f"two processes: {time.monotonic() - t:.1f} s")
    assert rc0 == 0, err0[-3000:]
    assert rc1 == 0, err1[-3000:]
    one, two = _results(job["one"]), _results(out)
    assert _numbers(two) == _numbers(one)  # to the last digit, per image and per iteration
    assert two["failures"] == one["failures"] == []
    assert (out / "results.md").read_text() == (job["one"] / "results.md").read_text()
    assert _rows(out) == _rows(job["one"])
    assert "prior" in out0 and "sigma=25" in out0 and out1.count("|") == 0  # one report
    assert "process 1 of 2: done" in err1
    # the batches were split: both processes restored images, every image exactly once
    assert two["processes"]["count"] == 2 and two["processes"]["local_devices"] == [1, 1]
    restored = two["processes"]["images_restored"]
    assert sum(restored) == 2 * 6 and min(restored) > 0
    assert sum(c["out"] for c in calls0 + calls1) == 2 * 6
    # the restored PNGs of process 1 came through process 0, byte for byte
    for method in ("prior", "authors"):
        files = sorted(p.name for p in (job["one"] / "images" / method).glob("*.png"))
        assert len(files) == 6
        for name in files:
            assert ((out / "images" / method / name).read_bytes()
                    == (job["one"] / "images" / method / name).read_bytes())


def test_four_devices_give_the_one_device_table(job):
    out = job["root"] / "four"
    env = _env(job["cache"], XLA_FLAGS="--xla_force_host_platform_device_count=4")
    ((rc, _, err, calls),) = _finish([_start(job["args"] + ["--batch", "6", "--out", str(out)],
                                             env)])
    assert rc == 0, err[-3000:]
    one, four = _results(job["one"]), _results(out)
    assert four["processes"]["local_devices"] == [4]
    assert (out / "results.md").read_text() == (job["one"] / "results.md").read_text()
    for method, per in one["methods"].items():  # other batches: equal up to float rounding
        ref, got = per["25"], four["methods"][method]["25"]
        assert set(got["per_image"]) == set(ref["per_image"]) and got["n_images"] == 6
        assert got["n_scored"] == 6
        for name, r in ref["per_image"].items():
            g = got["per_image"][name]
            assert g["psnr"] == pytest.approx(r["psnr"], abs=1e-3)
            assert g["ssim"] == pytest.approx(r["ssim"], abs=1e-4)
            assert g["psnr_per_iter"] == pytest.approx(r["psnr_per_iter"], abs=1e-3)
    assert len(_rows(out)) == 2 * 6  # the padding is never scored
    # every batch was padded to a multiple of 4 and spread over the 4 devices; the padding came
    # back and was cut off; no call kept per-iteration images
    # (per method: the five landscape crops, 5 -> 8, and the portrait one, 1 -> 4)
    assert sorted((c["batch"], c["devices"]) for c in calls) == [(4, 4)] * 2 + [(8, 4)] * 2
    assert all(c["out"] == c["batch"] for c in calls)
    assert not any(c["keep_images"] or c["images"] for c in calls + job["calls"])
    assert sum(c["batch"] for c in job["calls"]) == 2 * 6  # one device: no padding


def test_a_failing_process_fails_the_job(job):
    """Different arguments on process 1: both stop with the reason, nothing is written; a bad
    argument on process 1: it exits 2, process 0 says why it stopped."""
    for extra1, rc1_want, msg0, msg1 in (
            (["--iters", "3"], 1, "process 1 resolved a different experiment than process 0 "
                                  "(differs in: methods)", "stopped: process 0: process 1 "),
            (["--data-dir", "/no/such/dir"], 2, "stopped: process 1: --data-dir /no/such/dir: "
                                                "no such folder", "--data-dir /no/such/dir")):
        port = _free_port()
        out = job["root"] / f"fail{port}"
        flags = ["--batch", "2", "--out", str(out), "--coordinator", f"127.0.0.1:{port}",
                 "--num-processes", "2", "--distributed-timeout", "60"]
        t = time.monotonic()
        procs = [_start(job["args"] + flags + ["--process-id", str(i)] + (extra1 if i else []),
                        _env(job["cache"])) for i in (0, 1)]
        (rc0, _, err0, _), (rc1, _, err1, _) = _finish(procs, timeout=120)
        assert rc0 == 1 and msg0 in err0, err0[-3000:]
        assert rc1 == rc1_want and msg1 in err1, err1[-3000:]
        assert time.monotonic() - t < 100
        assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_a_dead_process_does_not_hang_the_job(job):
    """Process 1 joins and dies: process 0 stops (our stall check or JAX's heartbeat)."""
    port = _free_port()
    out = job["root"] / "dead"
    die = ("import os, jax; jax.distributed.initialize('127.0.0.1:%d', 2, 1, "
           "initialization_timeout=60); os._exit(3)" % port)
    t = time.monotonic()
    procs = [_start(job["args"] + ["--out", str(out), "--coordinator", f"127.0.0.1:{port}",
                                   "--num-processes", "2", "--process-id", "0",
                                   "--distributed-timeout", "8"], _env(job["cache"])),
             subprocess.Popen([sys.executable, "-c", die], cwd=ROOT, env=_env(job["cache"]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    (rc0, _, err0, _), (rc1, _, _, _) = _finish(procs, timeout=120)
    assert rc1 == 3 and rc0 != 0
    assert ("made no progress" in err0 or "another task died" in err0
            or "stopped sending heartbeats" in err0), err0[-3000:]
    assert time.monotonic() - t < 100
    assert not out.exists()


# ------------------------------------------------------------------------------ hardening
def test_num_processes_is_bounded():
    with pytest.raises(ValueError, match=r"--num-processes 100000000: expected at most 4096 "
                                         r"processes .*Fix: pass the number of processes"):
        dist.settings(coordinator="h:1", num_processes=100_000_000, process_id=0, env={})


def test_a_wait_says_every_few_seconds_what_it_waits_for(capsys, monkeypatch):
    monkeypatch.setattr(dist, "SAY_EVERY_S", 0.05)
    store, p0, p1 = _pair(timeout_s=0.4)
    with pytest.raises(dist.DistributedError, match="made no progress"):
        p0.share("hello", {})  # process 1 never answers
    said = [ln for ln in capsys.readouterr().err.splitlines() if "waiting" in ln]
    assert len(said) >= 3, said
    assert said[0].startswith("process 0: waiting 0 s for 'hello' from process 1 (gives up "
                              "after 0 s without progress: --distributed-timeout)")
    with pytest.raises(dist.DistributedError, match="made no progress"):
        p0.collect("s", lambda *a: None, block=True)
    assert "for the results of 's' from process(es) 1" in capsys.readouterr().err


def test_an_unreachable_coordinator_ends_in_one_line(tmp_path):
    """JAX aborts (SIGABRT, a C++ stack trace) when the coordinator never answers; the CLI's
    supervisor turns that into one line naming the cause, exit status 1, nothing written."""
    env = _env(tmp_path / "cache")
    data = tmp_path / "d"
    data.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / "a.png")
    out = tmp_path / "out"
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "dynpnp_jax.eval", "--dataset", "folder",
                        "--data-dir", str(data), "--sigma", "25", "--method", "prior", "--out",
                        str(out), "--coordinator", f"127.0.0.1:{_free_port()}",
                        "--num-processes", "2", "--process-id", "1",
                        "--distributed-timeout", "2"], cwd=ROOT, env=env, text=True,
                       capture_output=True, timeout=120)
    assert p.returncode == 1, p.stderr[-3000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: process 1 of 2: the JAX distributed runtime aborted it (an "
                           "XLA abort, which Python cannot catch; nothing was written): the "
                           "coordinator 127.0.0.1:"), p.stderr[-3000:]
    assert "did not answer within --distributed-timeout (2 s)" in last
    assert "Check failure stack trace" not in p.stderr and "    @ " not in p.stderr
    assert not out.exists() and time.monotonic() - t < 100
