"""Benchmark: the DRUNet forward (DPIR's denoiser) on CPU, JAX (jit) vs PyTorch (eager).

    python bench/bench_drunet.py                                  # 256x256, gray + colour, 5 rounds
    python bench/bench_drunet.py --sizes 256 512 --runs 3 --out /tmp/drunet.json

What runs, per colour variant (``gray``: 1 channel, ``color``: 3) and size (square images):

* ``torch``: :class:`bench.torch_ref_kair.TorchDRUNet` (KAIR's ``UNetRes`` as DPIR builds it:
  bias-free, 64/128/256/512, 4 residual blocks per scale) with seeded random weights, eval mode,
  ``torch.no_grad()``, the noise map concatenated as DPIR does (:func:`drunet_denoise`), in a
  persistent worker process that never imports JAX;
* ``jax``: the same weights saved by the worker as a KAIR-format ``.pth``, converted by
  :func:`dynpnp_jax.zoo.drunet.drunet_from_pth` into the registry entry's Network
  (``drunet-gray`` / ``drunet-color``), ``jax.jit(net.prior)`` with sigma 25/255.

KAIR's released weights are not needed: speed does not depend on the weights' values (random
weights, same shapes). Each size is timed in rounds; a round times one JAX call and one torch
call (alternating which goes first), so a change of load on the shared machine hits both alike.
Medians (and minima) of ``--runs`` rounds after one warm-up call each (JAX: the compile, reported
separately). The first outputs are compared (max abs difference): both sides compute the same
thing. Ratio = torch median / JAX median (> 1: JAX faster). The load average is printed before
and after and stored with ``--out`` (default ``bench/results/drunet-cpu.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIGMA = 25 / 255
VARIANTS = {"gray": 1, "color": 3}


# ----------------------------------------------------------------------------- torch worker
def _worker() -> None:
    """Reads JSON requests on stdin, answers one JSON line each. Never imports JAX."""
    import torch

    from bench.torch_ref_kair import drunet_denoise, random_drunet

    nets: dict = {}
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__}),
          flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "init":
            c = req["channels"]
            nets[c] = random_drunet(c, seed=c)
            torch.save(nets[c].state_dict(), req["path"])
            print(json.dumps({"ok": True}), flush=True)
            continue
        x = torch.from_numpy(np.load(req["input"]).transpose(0, 3, 1, 2).copy())
        with torch.no_grad():
            t0 = time.perf_counter()
            out = drunet_denoise(nets[req["channels"]], x, SIGMA)
            dt = time.perf_counter() - t0
        if req.get("save"):
            np.save(req["save"], out.numpy().transpose(0, 2, 3, 1))
        print(json.dumps({"t": dt}), flush=True)


class Worker:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self._line())

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the torch worker died (exit code {self.proc.poll()})")
        return line

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ----------------------------------------------------------------------------- main
def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "drunet-cpu.json")
    a = p.parse_args(argv)
    if a.runs < 1:
        p.error(f"--runs must be >= 1, got {a.runs}")
    for s in a.sizes:
        if not 8 <= s <= 4096:
            p.error(f"--sizes: {s} is outside 8..4096 pixels")
    return a


def main(argv=None) -> dict:
    a = _args(argv)
    import jax
    import jax.numpy as jnp
    from tqdm.auto import tqdm

    from dynpnp_jax.weights import get_spec
    from dynpnp_jax.zoo.drunet import drunet_from_pth

    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average before: {load_before}", flush=True)
    worker = Worker()
    print(f"torch worker: {worker.info}; jax {jax.__version__} on {jax.devices()[0].platform}",
          flush=True)
    prior = jax.jit(lambda net, x, s: net.prior(x, s))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            for variant in a.variants:
                c = VARIANTS[variant]
                pth = tmp / f"drunet_{variant}.pth"
                worker.ask(op="init", channels=c, path=str(pth))
                net = get_spec(f"drunet-{variant}").network(drunet_from_pth(pth, c))
                for size in a.sizes:
                    x = np.random.RandomState(size).rand(1, size, size, c).astype(np.float32)
                    np.save(tmp / "x.npy", x)
                    xj, sj = jnp.asarray(x), jnp.float32(SIGMA)
                    t0 = time.perf_counter()
                    out = np.asarray(jax.block_until_ready(prior(net, xj, sj)))
                    compile_s = time.perf_counter() - t0
                    worker.ask(op="run", channels=c, input=str(tmp / "x.npy"),
                               save=str(tmp / "ref.npy"))
                    diff = float(np.abs(out - np.load(tmp / "ref.npy")).max())
                    tj, tt = [], []
                    for r in tqdm(range(a.runs), desc=f"{variant} {size}x{size}"):
                        order = ("jax", "torch") if r % 2 == 0 else ("torch", "jax")
                        for who in order:
                            if who == "jax":
                                t0 = time.perf_counter()
                                jax.block_until_ready(prior(net, xj, sj))
                                tj.append(time.perf_counter() - t0)
                            else:
                                tt.append(worker.ask(op="run", channels=c,
                                                     input=str(tmp / "x.npy"))["t"])
                    row = {"variant": variant, "size": size, "jax": statistics.median(tj),
                           "torch": statistics.median(tt), "jax_min": min(tj),
                           "torch_min": min(tt), "jax_first_call": compile_s,
                           "max_abs_diff": diff}
                    row["ratio"] = row["torch"] / row["jax"]
                    rows.append(row)
                    print(f"{variant:5s} {size:4d}x{size:<4d}  jax {row['jax'] * 1e3:8.1f} ms  "
                          f"torch {row['torch'] * 1e3:8.1f} ms  torch/jax {row['ratio']:.2f}  "
                          f"(min {row['jax_min'] * 1e3:.1f} / {row['torch_min'] * 1e3:.1f} ms; "
                          f"jax first call {compile_s:.1f} s; max |jax - torch| {diff:.1e})",
                          flush=True)
        finally:
            worker.close()
    load_after = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average after: {load_after}", flush=True)
    result = {
        "command": "bench_drunet.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "what": "DRUNet forward (random weights, sigma 25/255), median of rounds; ratio = "
                "torch / jax (> 1: JAX faster)",
        "jax": jax.__version__, "torch_worker": worker.info, "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "runs": a.runs,
        "load_before": load_before, "load_after": load_after, "rows": rows}
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker()
    else:
        main()
