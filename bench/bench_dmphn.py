"""Benchmark: DMPHN 1-2-4 forward on a 1280x720 frame, JAX (jit) vs PyTorch (eager), CPU.

Each measurement runs in its own subprocess (so that peak resident memory, read from the
child's ``/proc/self/status`` ``VmHWM`` at its end and cross-checked with the parent's
``getrusage(RUSAGE_CHILDREN).ru_maxrss``, belongs to that configuration alone):

* ``jax``: ``load_network('dmphn-1-2-4')`` from the converted cache (no torch imported),
  ``jax.jit(net.prior)``; one warm-up call (compilation), then the median of ``--runs`` calls;
* ``torch``: the PyTorch reference of ``tests/test_dmphn.py`` (written from upstream
  ``models.py`` / ``DMPHN_1_2_4_test.py``) in eval mode under ``torch.no_grad()``, with the
  *same converted* weights (exported by the parent from the Flax variables to an ``.npz`` and
  transposed back to torch layout, so the torch child imports no jax); warm-up, median of runs;
* ``torch`` again with ``MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184``
  (glibc keeps freed memory instead of returning it with munmap; avoids page-fault churn for the
  large activations, at the price of a higher peak RSS);
* ``jax`` Stack(4)-DMPHN on the same frame: peak RSS and time (warm-up + ``--stack-runs``).

Prints a Markdown table. Usage::

    DYNPNP_CACHE=... python bench/bench_dmphn.py [--runs 3] [--stack-runs 1] [--threads N]

XLA flags tried on this 2-core CPU (see the printed notes): ``--xla_cpu_use_xnnpack``,
``--xla_cpu_use_onednn``, ``--xla_cpu_experimental_onednn_custom_call``,
``--xla_cpu_experimental_xnn_graph_fusion_mode=GREEDY[_SLINKY]`` all left the compiled
convolutions (and the output, bit for bit) unchanged; ``--xla_cpu_enable_fast_math`` did not help.
Extra flags can be given with ``--xla-flags``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAME = "gopro/blur/000001.png"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "17179869184", "MALLOC_TRIM_THRESHOLD_": "17179869184"}


def _vm_hwm_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _frame(path: str):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


# ------------------------------------------------------------------------------ children
def child_jax(args) -> dict:
    import jax
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from dynpnp_jax.weights import load_network

    x = _frame(args.image)[None]
    net = load_network(args.model, download=False)
    f = jax.jit(lambda n, x: n.prior(x))
    t0 = time.perf_counter()
    y = f(net, x).block_until_ready()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        y = f(net, x).block_until_ready()
        times.append(time.perf_counter() - t0)
    return {"first_s": first, "times_s": times, "checksum": float(np.asarray(y).mean()),
            "torch_imported": "torch" in sys.modules}


def _torch_reference():
    spec = importlib.util.spec_from_file_location("dmphn_reference", ROOT / "tests" / "test_dmphn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def child_torch(args) -> dict:
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    ref = _torch_reference()
    flat = np.load(args.weights)
    enc, dec = {}, {}
    for lv in ("lv1", "lv2", "lv3"):
        for kind, cls, store in (("encoder", ref.TorchEncoder, enc), ("decoder", ref.TorchDecoder, dec)):
            m = cls()
            sd = {}
            for key in m.state_dict():
                a = flat[f"{kind}_{lv}/{key}"]
                sd[key] = torch.from_numpy(np.ascontiguousarray(a))
            m.load_state_dict(sd)
            store[lv] = m.eval()
    x = ref.to_nchw(_frame(args.image)[None])
    with torch.no_grad():
        t0 = time.perf_counter()
        y = ref.torch_dmphn_124(enc, dec, x)
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            y = ref.torch_dmphn_124(enc, dec, x)
            times.append(time.perf_counter() - t0)
    return {"first_s": first, "times_s": times, "checksum": float(y.mean()),
            "threads": torch.get_num_threads()}


def export_weights(path: Path) -> None:
    """The converted Flax variables of dmphn-1-2-4, back in torch layout, as one .npz."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from dynpnp_jax.weights import load_network

    params = load_network("dmphn-1-2-4").variables["params"]
    flat = {}
    for block, layers in params.items():
        for layer, node in layers.items():
            convs = {"": node} if "kernel" in node else {".0": node["conv0"], ".2": node["conv1"]}
            for sub, p in convs.items():
                k = np.asarray(p["kernel"])
                flat[f"{block}/{layer}{sub}.weight"] = k.transpose(3, 2, 0, 1)  # HWIO -> OIHW
                flat[f"{block}/{layer}{sub}.bias"] = np.asarray(p["bias"])
    np.savez(path, **flat)


# ------------------------------------------------------------------------------ parent
def run_child(kind: str, args, extra_env: dict | None = None, model: str = "dmphn-1-2-4",
              runs: int | None = None, weights: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--model", model, "--image", args.image,
           "--runs", str(runs if runs is not None else args.runs)]
    if weights is not None:
        cmd += ["--weights", str(weights)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = dict(os.environ, **(extra_env or {}))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if args.xla_flags and kind == "jax":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if res.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{res.stderr[-4000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    # ru_maxrss of RUSAGE_CHILDREN is the max over all children so far: meaningful for this
    # child only when it grew
    out["ru_maxrss_children_mib"] = after / 1024.0 if after > before else None
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", choices=["jax", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--model", default="dmphn-1-2-4", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--image", default=None, help="1280x720 input frame (default: shared GoPro 000001)")
    p.add_argument("--runs", type=int, default=3, help="timed runs after the warm-up (median)")
    p.add_argument("--stack-runs", type=int, default=1, help="timed runs of Stack(4)-DMPHN")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the JAX children")
    args = p.parse_args(argv)

    if args.child:
        out = child_jax(args) if args.child == "jax" else child_torch(args)
        out["vm_hwm_mib"] = _vm_hwm_mib()
        print(json.dumps(out))
        return

    if args.image is None:
        sys.path.insert(0, str(ROOT))
        from dynpnp_jax import paths

        data = paths.data_dir()
        if data is None or not (data / FRAME).is_file():
            raise SystemExit(f"no frame: pass --image PATH (a 1280x720 RGB image); looked for "
                             f"{data}/{FRAME}")
        args.image = str(data / FRAME)

    from dynpnp_jax.weights import convert

    for name in ("dmphn-1-2-4", "stack4-dmphn"):
        convert(name)  # fill the cache before timing anything
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wpath = Path(tmp) / "dmphn124.npz"
        export_weights(wpath)
        jx = run_child("jax", args)
        rows.append(("JAX jit, DMPHN 1-2-4", jx))
        tt = run_child("torch", args, weights=wpath)
        rows.append(("PyTorch eager, DMPHN 1-2-4", tt))
        tm = run_child("torch", args, extra_env=MALLOC_ENV, weights=wpath)
        rows.append(("PyTorch eager + MALLOC_*_THRESHOLD_=16 GiB, DMPHN 1-2-4", tm))
        st = run_child("jax", args, model="stack4-dmphn", runs=args.stack_runs)
        rows.append(("JAX jit, Stack(4)-DMPHN", st))

    import jax
    import torch

    med = {label: statistics.median(r["times_s"]) for label, r in rows}
    base = med[rows[0][0]]
    print(f"\nDMPHN forward on a 1280x720 frame ({Path(args.image).name}), CPU: "
          f"{os.cpu_count()} cores, jax {jax.__version__}, torch {torch.__version__}"
          f" (threads {tt.get('threads')}); XLA_FLAGS={os.environ.get('XLA_FLAGS', '') + ' ' + args.xla_flags!r}\n")
    print("| configuration | warm-up / first call (s) | median of runs (s) | runs | time / JAX 1-2-4 "
          "| peak RSS VmHWM (MiB) |")
    print("|---|---|---|---|---|---|")
    for label, r in rows:
        print(f"| {label} | {r['first_s']:.1f} | {med[label]:.2f} | "
              f"{', '.join(f'{t:.2f}' for t in r['times_s'])} | {med[label] / base:.2f} | "
              f"{r['vm_hwm_mib']:.0f} |")
    print(f"\nPyTorch / JAX time ratio (DMPHN 1-2-4): default malloc "
          f"{med[rows[1][0]] / base:.2f}, with MALLOC thresholds {med[rows[2][0]] / base:.2f}")
    print(f"output means (same weights, sanity): JAX {jx['checksum']:.6f}, torch "
          f"{tt['checksum']:.6f}; torch imported by the JAX child: {jx['torch_imported']}")


if __name__ == "__main__":
    main()
