"""Benchmark: DMPHN forward on a 1280x720 frame, JAX (jit) vs PyTorch (eager), CPU.

Every configuration runs in its own subprocess, so that its peak resident memory (the child's
``/proc/self/status`` ``VmHWM`` at its end) belongs to it alone. The children of the frame
comparison are started one after the other (load, compile / warm-up: the "first call"), stay
alive, and are then timed **interleaved**: round ``r`` times one call of every child (the order
rotates from round to round), so slow phases of a shared machine hit all configurations alike.
Every timed call is printed as it completes; the table at the end (also printed when a later
child fails) gives the median of the ``--runs`` rounds, wall clock and process CPU time.

Frame configurations (DMPHN 1-2-4, the same converted weights everywhere):

* ``jax``: ``load_network('dmphn-1-2-4')`` from the converted cache (no torch imported),
  ``jax.jit(net.prior)``;
* ``jax`` again with the MALLOC thresholds below (XLA's CPU runtime also allocates its large
  temporary buffers afresh for every call);
* ``jax-convT`` (unless ``--no-before``): the same with the decoder's transposed convolutions
  computed by ``flax.linen.ConvTranspose`` as before (same parameters; the port before the phase
  decomposition of :class:`dynpnp_jax.zoo.dmphn.ConvTranspose4x4s2`);
* ``torch``: the PyTorch reference of ``tests/test_dmphn.py`` (written from upstream
  ``models.py`` / ``DMPHN_1_2_4_test.py``), eval mode, ``torch.no_grad()``, with the *same
  converted* weights (exported by the parent to an ``.npz`` in torch layout, so the torch child
  imports no jax);
* ``torch`` again with ``MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184``
  (glibc keeps freed memory instead of returning it with munmap; avoids page-fault churn for the
  large activations, at the price of a higher peak RSS).

Then (unless ``--no-layer``) the decoder's transposed convolution alone (kernel 4, stride 2,
padding 1) at the two sizes of the level-1 decoder (1x180x320x128 -> 64 and 1x360x640x64 -> 32):
``flax.linen.ConvTranspose`` (before), ``ConvTranspose4x4s2`` (after), torch ``ConvTranspose2d``,
interleaved the same way; and (unless ``--no-stack``) Stack(4)-DMPHN in JAX: peak RSS and time
(warm-up + ``--stack-runs``).

Usage::

    DYNPNP_CACHE=... python bench/bench_dmphn.py [--runs 3] [--stack-runs 1] [--threads N]

All arguments are checked before anything runs. The load of the machine (``os.getloadavg``) is
printed before and after: on a shared machine, compare only rows of the same run.

XLA flags tried on a 2-core CPU: ``--xla_cpu_use_xnnpack``, ``--xla_cpu_use_onednn``,
``--xla_cpu_experimental_onednn_custom_call``,
``--xla_cpu_experimental_xnn_graph_fusion_mode=GREEDY[_SLINKY]`` left the compiled convolutions
unchanged; ``--xla_cpu_enable_fast_math`` did not help. Extra flags: ``--xla-flags``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's dynpnp_jax, not an installed one
FRAME = "gopro/blur/000001.png"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "17179869184", "MALLOC_TRIM_THRESHOLD_": "17179869184"}
LAYER_SHAPES = (((1, 180, 320, 128), 64), ((1, 360, 640, 64), 32))  # level-1 decoder's deconvs


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


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def _timed(fn):
    """(wall s, process CPU s, result) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


# ------------------------------------------------------------------------------ children
def _use_flax_conv_transpose() -> None:
    """The port before the phase decomposition: flax's ConvTranspose with the same parameters."""
    import flax.linen as nn
    from dynpnp_jax.zoo import dmphn

    def deconv(features, name, dtype):
        return nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
                                transpose_kernel=True, dtype=dtype, name=name)

    dmphn._deconv = deconv


def _setup_jax(args):
    import jax

    sys.path.insert(0, str(ROOT))
    from dynpnp_jax.weights import load_network

    if args.child == "jax-convT":
        _use_flax_conv_transpose()
    x = _frame(args.image)[None]
    net = load_network(args.model, download=False)
    f = jax.jit(lambda n, x: n.prior(x))
    return lambda: f(net, x).block_until_ready()


def _torch_reference():
    spec = importlib.util.spec_from_file_location("dmphn_reference", ROOT / "tests" / "test_dmphn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _setup_torch(args):
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
            sd = {key: torch.from_numpy(np.ascontiguousarray(flat[f"{kind}_{lv}/{key}"]))
                  for key in m.state_dict()}
            m.load_state_dict(sd)
            store[lv] = m.eval()
    x = ref.to_nchw(_frame(args.image)[None])

    def run():
        with torch.no_grad():
            return ref.torch_dmphn_124(enc, dec, x)

    return run


def _layer_inputs(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for shape, cout in LAYER_SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        k = (rng.standard_normal((4, 4, cout, shape[-1])) * 0.05).astype(np.float32)  # (kH,kW,out,in)
        b = (rng.standard_normal(cout) * 0.01).astype(np.float32)
        out.append((x, k, b))
    return out


def _setup_layer_jax(args):
    import flax.linen as nn
    import jax

    sys.path.insert(0, str(ROOT))
    from dynpnp_jax.zoo.dmphn import ConvTranspose4x4s2

    fns = {}
    for i, (x, k, b) in enumerate(_layer_inputs()):
        variables = {"params": {"kernel": k, "bias": b}}
        cout = k.shape[2]
        before = nn.ConvTranspose(cout, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
                                  transpose_kernel=True)
        after = ConvTranspose4x4s2(cout)
        for label, mod in (("flax ConvTranspose", before), ("ConvTranspose4x4s2", after)):
            f = jax.jit(mod.apply)
            fns[f"{label} #{i}"] = (lambda f=f, v=variables, x=x: f(v, x).block_until_ready())
    return fns


def _setup_layer_torch(args):
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    fns = {}
    for i, (x, k, b) in enumerate(_layer_inputs()):
        m = torch.nn.ConvTranspose2d(x.shape[-1], k.shape[2], 4, stride=2, padding=1).eval()
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))))
            m.bias.copy_(torch.from_numpy(b))
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

        def run(m=m, xt=xt):
            with torch.no_grad():
                return m(xt)

        fns[f"torch ConvTranspose2d #{i}"] = run
    return fns


def child_main(args) -> None:
    """Persistent child: set up, warm up (report), then one timed call per 'run' line on stdin."""
    if args.child in ("jax", "jax-convT"):
        fns = {args.child: _setup_jax(args)}
    elif args.child == "torch":
        fns = {args.child: _setup_torch(args)}
    elif args.child == "layer-jax":
        fns = _setup_layer_jax(args)
    else:
        fns = _setup_layer_torch(args)
    first, last = {}, {}
    for label, fn in fns.items():
        first[label], _, last[label] = _timed(fn)
    info = {"event": "ready", "first_s": first, "torch_imported": "torch" in sys.modules}
    if "torch" in sys.modules:
        import torch

        info["threads"] = torch.get_num_threads()
    _emit(info)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            res = {}
            for label, fn in fns.items():
                wall, cpu, last[label] = _timed(fn)
                res[label] = (wall, cpu)
            _emit({"event": "run", "times": res})
        elif cmd == "quit":
            break
    import numpy as np

    checks = {label: float(np.asarray(y).mean()) for label, y in last.items()}
    _emit({"event": "done", "vm_hwm_mib": _vm_hwm_mib(), "checksum": checks})


def child_stack(args) -> None:
    """One-shot child: Stack(4)-DMPHN, warm-up + ``--runs`` calls."""
    import numpy as np

    fn = _setup_jax(args)
    first, _, y = _timed(fn)
    times = [_timed(fn)[:2] for _ in range(args.runs)]
    _emit({"event": "done", "first_s": {"stack": first}, "times": [{"stack": t} for t in times],
           "vm_hwm_mib": _vm_hwm_mib(), "checksum": {"stack": float(np.asarray(y).mean())}})


# ------------------------------------------------------------------------------ parent
class Child:
    """A persistent child process speaking one JSON object per line."""

    def __init__(self, kind: str, args, extra_env: dict | None = None,
                 weights: Path | None = None, model: str = "dmphn-1-2-4", runs: int = 0,
                 xla_flags: str = ""):
        cmd = [sys.executable, __file__, "--child", kind, "--model", model, "--image", args.image,
               "--runs", str(max(runs, 1))]
        if weights is not None:
            cmd += ["--weights", str(weights)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        env = dict(os.environ, **(extra_env or {}))
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        if kind.startswith(("jax", "layer-jax", "stack")):
            flags = " ".join(f for f in (env.get("XLA_FLAGS", ""), args.xla_flags, xla_flags) if f)
            if flags:
                env["XLA_FLAGS"] = flags
        self.kind = kind
        # stderr to a file, not a pipe: a child that warns a lot must not block on a full pipe
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1)

    def read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                self.err.seek(0)
                raise RuntimeError(f"{self.kind} child failed (exit {code}):\n"
                                   f"{self.err.read()[-4000:]}")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)

    def send(self, cmd: str) -> None:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def close(self) -> dict:
        self.send("quit")
        out = self.read()
        self.proc.wait()
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Rows:
    """Measurements per row label: first call, timed (wall, cpu) runs, peak RSS."""

    def __init__(self):
        self.first, self.runs, self.rss, self.note = {}, {}, {}, {}

    def add_ready(self, ready: dict, rename) -> None:
        for label, t in ready["first_s"].items():
            self.first[rename(label)] = t
            self.runs.setdefault(rename(label), [])

    def add_run(self, times: dict, rename) -> None:
        for label, (wall, cpu) in times.items():
            self.runs.setdefault(rename(label), []).append((wall, cpu))

    def table(self, labels: list[str], base: str | None, title: str) -> str:
        lines = [f"\n{title}\n", "| configuration | first call (s) | median wall (s) | median CPU (s) "
                 "| wall of each run (s) | wall / first row | peak RSS VmHWM (MiB) |",
                 "|---|---|---|---|---|---|---|"]
        bmed = None
        if base in self.runs and self.runs[base]:
            bmed = statistics.median(w for w, _ in self.runs[base])
        for label in labels:
            runs = self.runs.get(label, [])
            if not runs:
                lines.append(f"| {label} | {self.first.get(label, float('nan')):.2f} | (no completed "
                             "run) | | | | |")
                continue
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            ratio = f"{wall / bmed:.2f}" if bmed else ""
            rss = self.rss.get(label)
            lines.append(f"| {label} | {self.first.get(label, float('nan')):.2f} | {wall:.3f} | "
                         f"{cpu:.3f} | {', '.join(f'{w:.3f}' for w, _ in runs)} | {ratio} | "
                         f"{'' if rss is None else f'{rss:.0f}'} |")
        return "\n".join(lines)


def interleaved(children: list[tuple[Child, callable]], rounds: int, rows: Rows, what: str) -> None:
    """Time ``rounds`` rounds, one call per child per round, rotating the order."""
    for r in range(rounds):
        order = children[r % len(children):] + children[:r % len(children)]
        for child, rename in order:
            child.send("run")
            res = child.read()
            rows.add_run(res["times"], rename)
            shown = ", ".join(f"{rename(k)} {w:.3f} s wall / {c:.3f} s CPU"
                              for k, (w, c) in res["times"].items())
            print(f"  [{what} round {r + 1}/{rounds}] {shown}", flush=True)


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
                # Conv HWIO -> OIHW; ConvTranspose (kH, kW, out, in) -> torch (in, out, kH, kW):
                # the same axis permutation
                flat[f"{block}/{layer}{sub}.weight"] = k.transpose(3, 2, 0, 1)
                flat[f"{block}/{layer}{sub}.bias"] = np.asarray(p["bias"])
    np.savez(path, **flat)


def _load() -> str:
    return "load average (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", choices=["jax", "jax-convT", "torch", "layer-jax", "layer-torch",
                                       "stack"], help=argparse.SUPPRESS)
    p.add_argument("--model", default="dmphn-1-2-4", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--image", default=None,
                   help="input frame, RGB, height and width multiples of 8 (default: the shared "
                        "GoPro frame 000001, 1280x720)")
    p.add_argument("--runs", type=int, default=3, help="timed rounds after the warm-up (median); >= 1")
    p.add_argument("--stack-runs", type=int, default=1, help="timed runs of Stack(4)-DMPHN; >= 1")
    p.add_argument("--no-stack", action="store_true", help="skip Stack(4)-DMPHN")
    p.add_argument("--no-layer", action="store_true", help="skip the transposed-conv layer benchmark")
    p.add_argument("--no-before", action="store_true",
                   help="skip the JAX row with flax's ConvTranspose (the port before the phase form)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the JAX children")
    p.add_argument("--also-xla-flags", action="append", default=[], metavar="FLAGS",
                   help="add a JAX DMPHN 1-2-4 row run with these extra XLA_FLAGS (repeatable), "
                        "e.g. --also-xla-flags=--xla_cpu_experimental_ynn_fusion_type=+eltwise")
    args = p.parse_args(argv)
    if args.child:
        return args

    # ---- validate everything before running anything (a bad value must not cost a long run)
    if args.runs < 1:
        p.error(f"--runs must be >= 1 (the median needs at least one timed run), got {args.runs}")
    if args.stack_runs < 1:
        p.error(f"--stack-runs must be >= 1, got {args.stack_runs} (to skip Stack(4)-DMPHN "
                "pass --no-stack)")
    if args.threads < 0:
        p.error(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    if args.image is None:
        sys.path.insert(0, str(ROOT))
        from dynpnp_jax import paths

        data = paths.data_dir()
        if data is None or not (data / FRAME).is_file():
            p.error(f"no frame: pass --image PATH (an RGB image); looked for {data}/{FRAME}")
        args.image = str(data / FRAME)
    if not Path(args.image).is_file():
        p.error(f"--image {args.image!r}: no such file")
    try:
        from PIL import Image

        with Image.open(args.image) as im:
            w, h = im.size
    except Exception as e:  # noqa: BLE001 - any unreadable file is a bad argument
        p.error(f"--image {args.image!r}: not a readable image ({e})")
    args.size = (w, h)
    if h % 8 or w % 8:
        p.error(f"--image {args.image!r} is {w}x{h}: height and width must be multiples of 8 "
                "(the PyTorch reference cuts the frame into 2x2 patches of multiples of 4)")
    for mod in ("torch", "jax"):
        if importlib.util.find_spec(mod) is None:
            p.error(f"the benchmark needs {mod}, which is not installed")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child == "stack":
        child_stack(args)
        return
    if args.child:
        child_main(args)
        return

    from dynpnp_jax.weights import convert

    import jax
    import torch

    models = ["dmphn-1-2-4"] + ([] if args.no_stack else ["stack4-dmphn"])
    for name in models:
        convert(name)  # fill the cache before timing anything
    print(f"DMPHN forward, CPU: {os.cpu_count()} cores, jax {jax.__version__}, torch "
          f"{torch.__version__}; image {args.image}; XLA_FLAGS="
          f"{(os.environ.get('XLA_FLAGS', '') + ' ' + args.xla_flags).strip()!r}", flush=True)
    print(f"before: {_load()}", flush=True)

    labels = {"jax": "JAX jit, DMPHN 1-2-4 (phase-decomposed transposed convs)",
              "jax-convT": "JAX jit, DMPHN 1-2-4, flax ConvTranspose (before)",
              "jax-malloc": "JAX jit + MALLOC_*_THRESHOLD_=16 GiB, DMPHN 1-2-4",
              "torch": "PyTorch eager, DMPHN 1-2-4",
              "torch-malloc": "PyTorch eager + MALLOC_*_THRESHOLD_=16 GiB, DMPHN 1-2-4"}
    frame, layer, out_tables = Rows(), Rows(), []
    children: list[tuple[Child, callable]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wpath = Path(tmp) / "dmphn124.npz"
            export_weights(wpath)
            specs = [("jax", "jax", {}, ""), ("jax-malloc", "jax", MALLOC_ENV, "")]
            specs += [] if args.no_before else [("jax-convT", "jax-convT", {}, "")]
            for i, flags in enumerate(args.also_xla_flags):
                labels[f"jax-flags{i}"] = f"JAX jit, DMPHN 1-2-4, XLA_FLAGS += {flags}"
                specs.append((f"jax-flags{i}", "jax", {}, flags))
            specs += [("torch", "torch", {}, ""), ("torch-malloc", "torch", MALLOC_ENV, "")]
            for key, kind, env, flags in specs:
                child = Child(kind, args, extra_env=env, weights=wpath if kind == "torch" else None,
                              xla_flags=flags)
                children.append((child, lambda _l, key=key: labels[key]))
                ready = child.read()
                frame.add_ready(ready, children[-1][1])
                print(f"  [frame] {labels[key]}: first call {next(iter(ready['first_s'].values())):.1f} s"
                      + (f", torch threads {ready['threads']}" if "threads" in ready else ""),
                      flush=True)
            interleaved(children, args.runs, frame, "frame")
            sums = {}
            for child, rename in children:
                done = child.close()
                frame.rss[rename("")] = done["vm_hwm_mib"]
                sums[rename("")] = next(iter(done["checksum"].values()))
            children = []
        frame_labels = [labels[k] for k, *_ in specs]
        jx, tt, tm = labels["jax"], labels["torch"], labels["torch-malloc"]
        t = frame.table(frame_labels, jx, f"DMPHN 1-2-4 forward, {Path(args.image).name} "
                                          f"({args.size[0]}x{args.size[1]}), interleaved rounds")
        med = {k: statistics.median(w for w, _ in v) for k, v in frame.runs.items() if v}
        jm = labels["jax-malloc"]
        t += (f"\n\nPyTorch / JAX wall-time ratio (DMPHN 1-2-4): default malloc {med[tt] / med[jx]:.2f}, "
              f"PyTorch with MALLOC thresholds / JAX {med[tm] / med[jx]:.2f}, both with MALLOC "
              f"thresholds {med[tm] / med[jm]:.2f}")
        if labels["jax-convT"] in med:
            t += f"; JAX speed-up over the flax-ConvTranspose port {med[labels['jax-convT']] / med[jx]:.2f}x"
        t += "\noutput means (same weights, sanity): " + ", ".join(f"{v:.6f}"
                                                               for k, v in sums.items())
        out_tables.append(t)
        print(t, flush=True)

        if not args.no_layer:
            ljax = Child("layer-jax", args)
            children.append((ljax, lambda k: k))
            layer.add_ready(ljax.read(), lambda k: k)
            ltorch = Child("layer-torch", args)
            children.append((ltorch, lambda k: k))
            layer.add_ready(ltorch.read(), lambda k: k)
            interleaved(children, max(args.runs, 5), layer, "layer")
            for child, _ in children:
                child.close()
            children = []
            lab = []
            for i, (shape, cout) in enumerate(LAYER_SHAPES):
                lab += [f"flax ConvTranspose #{i}", f"ConvTranspose4x4s2 #{i}",
                        f"torch ConvTranspose2d #{i}"]
            names = ", ".join(f"#{i}: {shape} -> {cout} channels"
                              for i, (shape, cout) in enumerate(LAYER_SHAPES))
            t = layer.table(lab, None, f"Transposed conv 4x4 stride 2 padding 1 alone ({names}; "
                                       "median of at least 5 interleaved rounds)")
            med = {k: statistics.median(w for w, _ in v) for k, v in layer.runs.items() if v}
            for i in range(len(LAYER_SHAPES)):
                t += (f"\n#{i}: flax ConvTranspose / ConvTranspose4x4s2 "
                      f"{med[f'flax ConvTranspose #{i}'] / med[f'ConvTranspose4x4s2 #{i}']:.2f}, "
                      f"torch / ConvTranspose4x4s2 "
                      f"{med[f'torch ConvTranspose2d #{i}'] / med[f'ConvTranspose4x4s2 #{i}']:.2f}")
            out_tables.append(t)
            print(t, flush=True)

        if not args.no_stack:
            st = Child("stack", args, model="stack4-dmphn", runs=args.stack_runs)
            children.append((st, lambda k: k))
            done = st.read()
            st.proc.wait()
            children = []
            srows = Rows()
            lab = "JAX jit, Stack(4)-DMPHN (phase-decomposed transposed convs)"
            srows.first[lab] = done["first_s"]["stack"]
            srows.runs[lab] = [tuple(r["stack"]) for r in done["times"]]
            srows.rss[lab] = done["vm_hwm_mib"]
            t = srows.table([lab], None, "Stack(4)-DMPHN, same frame")
            out_tables.append(t)
            print(t, flush=True)
    except BaseException:
        # keep what finished: the frame table even when a later child fails
        if frame.runs and not out_tables:
            print(frame.table(list(frame.runs), None, "(partial) DMPHN 1-2-4 forward"), flush=True)
        raise
    finally:
        for child, _ in children:
            child.kill()
        print(f"\nafter: {_load()}", flush=True)


if __name__ == "__main__":
    main()
