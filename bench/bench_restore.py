"""Benchmark: jitted ``restore`` against PyTorch eager and the authors' notebook loop (CPU).

    python bench/bench_restore.py                      # full run, 256 and 512 (4-9 min)
    python bench/bench_restore.py --sizes 256 --reps 3
    python bench/bench_restore.py --flag-sweep         # XLA_FLAGS variants, DnCNN forward only

What is timed (one gray Set12 image, sigma 25 clipped noise, seed 0, DnCNN-S sigma 25, T=2):

* ``restore`` (the public function: validation + the jitted loop), modes ``authors`` and
  ``gradient``, after one warm-up (compiling) call, ``block_until_ready``, median of ``--reps``;
* the network alone in JAX: T+1 chained DnCNN forwards in one jitted function, i.e. the
  forwards the loop cannot avoid (g(y) once + one prior per iteration); the loop's overhead
  over them is given in %, and the DnCNN forward's GFLOP/s (2*9*Cin*Cout*H*W per conv);
* compile time of ``restore`` for T=2 and T=16 (``jax.jit(...).lower(...)`` and ``.compile()``,
  a fresh ``jax.jit`` each time) and, for T=2, first call minus steady state;
* ``torch_restore`` (``bench/torch_ref.py``, same loop in eager PyTorch), in a subprocess with
  the default environment, and in one with
  ``MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184`` (glibc reads these at
  process start: every large buffer then comes from the heap instead of a fresh mmap, and freed
  memory is not returned to the OS, so torch's per-layer allocations stop page-faulting);
* the authors' notebook loop (``authors_notebook_loop``: 3 identical channels, host numpy
  products, numpy<->torch round trips, g(y) recomputed once per channel per iteration), in the
  default-environment worker, once per size by default (``--nb-reps``, ``--nb-reps-large``): it is
  an order of magnitude slower than the rest. It runs 3*T + 3*3*T = 24 gray DnCNN forwards for
  T=2 where our loop runs T+1 = 3.

The two torch variants run in persistent worker processes (one per environment) fed over a
pipe, and every size is timed in rounds that run each variant once, so that a change of load on a
shared machine hits all of them alike. Torch's thread count is left at its default and printed.
The load average is printed before and after; min and median are both kept in ``--json``.
A full run (256 and 512, 3 rounds, the notebook loop once per size) takes about 4 minutes on 2
idle cores, about 8-9 on a loaded machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "17179869184", "MALLOC_TRIM_THRESHOLD_": "17179869184"}
PARAMS = {"authors": dict(delta=0.01, mu=0.1, alpha=1e-5),  # the Set12 notebook's numbers
          "gradient": dict(delta=0.01, mu=0.1, alpha=1e-5)}
IMAGES = {256: "01.png", 512: "08.png"}  # other sizes: a crop of the next larger one
FLAG_VARIANTS = [
    "",
    "--xla_cpu_experimental_ynn_fusion_type=",  # YNNPACK off: Eigen convolutions
    "--xla_cpu_use_xnnpack=true",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_multi_thread_eigen=false",
]


def dncnn_flops(h: int, w: int, cin: int = 1, features: int = 64, depth: int = 17) -> float:
    chans = [cin] + [features] * (depth - 1) + [cin]
    return float(sum(2 * 9 * a * b * h * w for a, b in zip(chans[:-1], chans[1:])))


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def stats(ts: list[float]) -> dict:
    return {"median": statistics.median(ts), "min": min(ts), "runs": ts}


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def noisy_image(size: int, data_dir: Path) -> np.ndarray:
    from PIL import Image

    name = IMAGES.get(size) or IMAGES[256 if size <= 256 else 512]
    clean = np.asarray(Image.open(data_dir / "set12" / name).convert("L"), np.float32)
    clean = clean[:size, :size] / 255.0
    rng = np.random.default_rng(0)
    return np.clip(clean + rng.normal(0.0, 25 / 255, clean.shape), 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------ torch worker
def torch_worker(args) -> None:
    """A persistent subprocess (its environment decides malloc's behaviour).

    Reads one JSON request per line from stdin, ``{"what": "authors"|"gradient"|"notebook"|
    "warm", "size": S}``, runs it once and answers ``{"t": seconds}`` on stdout.
    """
    import torch

    from bench.torch_ref import TorchDnCNN, authors_notebook_loop, torch_restore

    blob = np.load(args.blob)
    variables = {"params": {}}
    for key in blob.files:
        if key.startswith("conv"):
            layer, kind = key.split(".")
            variables["params"].setdefault(layer, {})[kind] = blob[key]
    net = TorchDnCNN.from_flax(variables)
    print(json.dumps({"threads": torch.get_num_threads(),
                      "env": {k: os.environ.get(k) for k in MALLOC_ENV}}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        size, what = req["size"], req["what"]
        yg = blob[f"y{size}"]
        y = torch.from_numpy(yg)[None, None]
        t0 = time.perf_counter()
        if what == "warm":  # oneDNN primitives and allocator for this size
            with torch.no_grad():
                net(y)
        elif what == "notebook":
            p = PARAMS["authors"]
            authors_notebook_loop(net, yg, args.iters, eta=p["mu"], delta=p["delta"],
                                  rho=p["alpha"])
        else:
            torch_restore(net, y, what, args.iters, **PARAMS[what])
        print(json.dumps({"t": time.perf_counter() - t0}), flush=True)


class TorchProc:
    """Handle on a persistent torch worker started with ``env_extra`` added to the environment."""

    def __init__(self, blob: Path, iters: int, env_extra: dict):
        env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
        env.update(env_extra)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--torch-worker", "--blob", str(blob),
               "--iters", str(iters)]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.info = json.loads(self.proc.stdout.readline())

    def run(self, what: str, size: int) -> float:
        self.proc.stdin.write(json.dumps({"what": what, "size": size}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"torch worker died (exit {self.proc.wait()})")
        return json.loads(line)["t"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ------------------------------------------------------------------------------ JAX side
def compile_times(params, y, iters_list=(2, 16)) -> dict:
    """``lower`` and ``compile`` seconds of ``restore`` per mode and T, each from a fresh trace."""
    import jax

    import dynpnp_jax as dj
    from dynpnp_jax import solver

    res = {}
    for mode in ("authors", "gradient"):
        for iters in iters_list:
            cfg = dj.make_config(mode, iters, **PARAMS[mode])
            # a new function object: no trace or executable of an earlier call can be reused
            fresh = jax.jit(lambda p, y, c, cl: solver._restore(p, y, c, cl))
            t0 = time.perf_counter()
            lowered = fresh.lower(params, y, cfg, None)
            t1 = time.perf_counter()
            lowered.compile()
            t2 = time.perf_counter()
            res[f"compile_{mode}_T{iters}"] = {"lower": t1 - t0, "compile": t2 - t1}
            print(f"  [jax] compile {mode} T={iters}: lower {t1 - t0:.2f} s, "
                  f"compile {t2 - t1:.2f} s", file=sys.stderr, flush=True)
    return res


def run_all(args, ys: dict, blob: Path) -> tuple[dict, dict]:
    """All timings, interleaved per size: each round runs every variant once, so that a change
    of load on a shared machine hits all of them alike."""
    import jax
    import jax.numpy as jnp

    import dynpnp_jax as dj

    net = dj.load_network("dncnn-s25")
    params = {"prior": net}
    n_fwd = args.iters + 1

    @jax.jit
    def forwards(net, x):
        for _ in range(n_fwd):  # chained, so nothing can be shared between the forwards
            x = x - net.apply(x)
        return x

    res = compile_times(params, jnp.asarray(ys[min(args.sizes)][None, :, :, None]))
    workers = {"torch": TorchProc(blob, args.iters, {}),
               "torch_malloc": TorchProc(blob, args.iters, MALLOC_ENV)}
    info = {k: w.info for k, w in workers.items()}
    try:
        for size in args.sizes:
            y = jnp.asarray(ys[size][None, :, :, None])
            cfgs = {m: dj.make_config(m, args.iters, **PARAMS[m]) for m in ("authors", "gradient")}
            jobs = {f"jax_{m}": (lambda c=c: dj.restore(params, y, c)[0].block_until_ready())
                    for m, c in cfgs.items()}
            jobs["jax_net"] = lambda: forwards(net, y).block_until_ready()
            for name, w in workers.items():
                for m in ("authors", "gradient"):
                    jobs[f"{name}_{m}"] = (lambda w=w, m=m: w.run(m, size))
            nb_reps = 0 if args.no_notebook else (
                args.nb_reps if size <= 256 else args.nb_reps_large)
            if nb_reps:
                jobs["notebook"] = lambda: workers["torch"].run("notebook", size)
            times: dict[str, list] = {k: [] for k in jobs}
            first = {}
            for k in ("jax_authors", "jax_gradient", "jax_net"):  # compile + one run
                t0 = time.perf_counter()
                jobs[k]()
                first[k] = time.perf_counter() - t0
            for w in workers.values():
                w.run("warm", size)
            for rnd in range(args.reps):
                for k, job in jobs.items():
                    if k == "notebook" and rnd >= nb_reps:
                        continue
                    t0 = time.perf_counter()
                    got = job()
                    times[k].append(got if k.startswith(("torch", "notebook")) else
                                    time.perf_counter() - t0)
                print(f"  [{size}] round {rnd}: " + ", ".join(
                    f"{k} {v[-1]:.2f}" for k, v in times.items() if len(v) > rnd),
                    file=sys.stderr, flush=True)
            for k, ts in times.items():
                st = stats(ts)
                if k in first:
                    st["first_call"] = first[k]
                res[f"{k}_{size}"] = st
            st = res[f"jax_net_{size}"]
            st["forwards"] = n_fwd
            st["gflops"] = dncnn_flops(size, size) * n_fwd / st["median"] / 1e9
    finally:
        for w in workers.values():
            w.close()
    return res, info


# ------------------------------------------------------------------------------ flag sweep
def forward_worker(args) -> None:
    """One DnCNN forward at ``--sizes[0]`` under the current XLA_FLAGS; prints one JSON line."""
    import hashlib

    import jax
    import jax.numpy as jnp

    import dynpnp_jax as dj

    net = dj.load_network("dncnn-s25")
    size = args.sizes[0]
    x = jnp.asarray(np.random.default_rng(0).random((1, size, size, 1), np.float32))
    f = jax.jit(lambda n, x: n.apply(x))
    t0 = time.perf_counter()
    compiled = f.lower(net, x).compile()
    comp = time.perf_counter() - t0
    text = compiled.as_text()
    body = "\n".join(l.split(", metadata=")[0] for l in text.splitlines()
                     if not l.startswith("HloModule"))
    compiled(net, x).block_until_ready()
    ts = timed(lambda: compiled(net, x).block_until_ready(), args.reps)
    print("RESULT " + json.dumps({
        "flags": os.environ.get("XLA_FLAGS", ""), "compile": comp, **stats(ts),
        "hlo_hash": hashlib.sha1(body.encode()).hexdigest()[:10],
        "ynn": "ynn_fusion" in text, "xnn": "xnn_fusion" in text,
        "onednn": "onednn" in text.lower()}), flush=True)


def flag_sweep(args) -> None:
    rows: dict[str, list] = {f: [] for f in FLAG_VARIANTS}
    print(f"load average before: {loadavg()}")
    for rnd in range(args.rounds):
        for flags in FLAG_VARIANTS:  # interleaved rounds: load drifts hit every variant alike
            env = dict(os.environ, XLA_FLAGS=flags)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--forward-worker",
                   "--reps", str(args.reps), "--sizes", str(args.sizes[0])]
            for attempt in range(2):  # a retry: the shared tree may be mid-edit
                proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
                if proc.returncode == 0:
                    break
                print(f"  worker failed ({flags!r}):\n{proc.stderr[-2000:]}", file=sys.stderr)
            proc.check_returncode()
            out = proc.stdout
            rows[flags].append(json.loads(next(l for l in out.splitlines()
                                                if l.startswith("RESULT "))[7:]))
            print(f"  round {rnd}: {flags or '(default)'}: min {rows[flags][-1]['min']:.3f} s",
                  file=sys.stderr, flush=True)
    print(f"load average after: {loadavg()}")
    size = args.sizes[0]
    base = min(min(r["runs"]) for r in rows[""])
    print(f"\nDnCNN forward, {size}x{size} gray, {args.rounds} processes x {args.reps} runs each\n")
    print("| XLA_FLAGS | min (ms) | median (ms) | GFLOP/s (min) | vs default | compile (s) "
          "| compiled HLO | YNN fusions |")
    print("|---|---|---|---|---|---|---|---|")
    base_hash = rows[""][0]["hlo_hash"]
    for flags, rs in rows.items():
        allruns = [t for r in rs for t in r["runs"]]
        mn, md = min(allruns), statistics.median(allruns)
        same = "same as default" if rs[0]["hlo_hash"] == base_hash else "differs"
        print(f"| `{flags or '(default)'}` | {mn * 1e3:.0f} | {md * 1e3:.0f} | "
              f"{dncnn_flops(size, size) / mn / 1e9:.0f} | {base / mn:.2f}x | "
              f"{statistics.median(r['compile'] for r in rs):.2f} | {same} | {rs[0]['ynn']} |")


# ------------------------------------------------------------------------------ report
def report(args, jr: dict, info: dict) -> None:
    print(f"\ntorch threads (default): {info['torch']['threads']}; malloc variant env: "
          f"{info['torch_malloc']['env']}")
    print(f"T={args.iters}, median of {args.reps} runs (torch and JAX); notebook loop: median of "
          f"{args.nb_reps} run(s) at 256, {args.nb_reps_large} at 512; seconds\n")
    print("| size | mode | JAX restore | JAX net only (T+1 fwd) | loop overhead | "
          "torch eager | torch eager + malloc env | authors' notebook loop | "
          "speed-up vs torch | vs torch + malloc | vs notebook |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        net_t = jr[f"jax_net_{size}"]["median"]
        for mode in ("authors", "gradient"):
            j = jr[f"jax_{mode}_{size}"]["median"]
            td = jr[f"torch_{mode}_{size}"]["median"]
            tm = jr[f"torch_malloc_{mode}_{size}"]["median"]
            nb = jr.get(f"notebook_{size}", {}).get("median") if mode == "authors" else None
            nb_s = f"{nb:.2f}" if nb else "-"
            nb_r = f"{nb / j:.1f}x" if nb else "-"
            over = 100 * (j - net_t) / net_t
            print(f"| {size} | {mode} | {j:.3f} | {net_t:.3f} | {over:+.1f}% | "
                  f"{td:.3f} | {tm:.3f} | {nb_s} | {td / j:.2f}x | {tm / j:.2f}x | {nb_r} |")
    print("\nDnCNN forward throughput (JAX, from the T+1-forward timing):")
    for size in args.sizes:
        r = jr[f"jax_net_{size}"]
        print(f"  {size}x{size}: {dncnn_flops(size, size) / 1e9:.1f} GFLOP per forward, "
              f"{r['median'] / r['forwards'] * 1e3:.0f} ms per forward, {r['gflops']:.1f} GFLOP/s")
    print("\nCompile time of restore (s): jax.jit(...).lower() + .compile(), "
          f"{min(args.sizes)}x{min(args.sizes)}")
    print("| mode | T=2 lower | T=2 compile | T=16 lower | T=16 compile "
          "| T=2 first call - steady |")
    print("|---|---|---|---|---|---|")
    size = min(args.sizes)
    for mode in ("authors", "gradient"):
        a, b = jr[f"compile_{mode}_T2"], jr[f"compile_{mode}_T16"]
        fc = jr[f"jax_{mode}_{size}"]  # first call: trace + compile + one run
        print(f"| {mode} | {a['lower']:.2f} | {a['compile']:.2f} | {b['lower']:.2f} | "
              f"{b['compile']:.2f} | {fc['first_call'] - fc['median']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--nb-reps", type=int, default=1, help="notebook-loop runs at <= 256")
    ap.add_argument("--nb-reps-large", type=int, default=1, help="notebook-loop runs above 256")
    ap.add_argument("--no-notebook", action="store_true")
    ap.add_argument("--json", type=Path, help="write all numbers here")
    ap.add_argument("--flag-sweep", action="store_true", help="time XLA_FLAGS variants instead")
    ap.add_argument("--rounds", type=int, default=2, help="flag sweep: processes per variant")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--forward-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--blob", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.torch_worker:
        return torch_worker(args)
    if args.forward_worker:
        return forward_worker(args)
    if args.flag_sweep:
        return flag_sweep(args)

    import jax

    from dynpnp_jax import load_network, paths

    data_dir = paths.data_dir()
    if data_dir is None:
        sys.exit("Set12 not found: set DYNPNP_DATA or DYNPNP_SHARED")
    start = time.perf_counter()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load average before: {loadavg()}")
    ys = {s: noisy_image(s, data_dir) for s in args.sizes}
    net = load_network("dncnn-s25")
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "blob.npz"
        arrays = {f"y{s}": y for s, y in ys.items()}
        for layer, p in net.variables["params"].items():
            arrays[f"{layer}.kernel"] = np.asarray(p["kernel"])
            arrays[f"{layer}.bias"] = np.asarray(p["bias"])
        np.savez(blob, **arrays)
        jr, info = run_all(args, ys, blob)
    report(args, jr, info)
    print(f"\nload average after: {loadavg()}; total {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"results": jr, "workers": info}, indent=1))


if __name__ == "__main__":
    main()
