"""Richer schedule families for the ``dpir`` loop, tuned by gradient and scored on Set3G.

    python bench/schedule_families.py --family relax --shake-kernels 40 --noise 2.55 --iters 8
    python bench/schedule_families.py --render configs/dpir_tuned_relax.py --shake-kernels 40

The library's tuned schedules (``configs/dpir_tuned.py``) are one ``sigma_t`` and one ``rho_t``
per iteration. This experiment asks whether a larger family buys what that one does not (the
learned-schedules issue's +0.15 dB at T=8). Families:

* ``base``  -- ``sigma_t``, ``rho_t`` (what ``python -m dynpnp_jax.tune --task dpir`` tunes);
* ``relax`` -- plus a relaxation ``gamma_t`` of the prior step, ``v_t = x_t + gamma_t (D(x_t) -
  x_t)`` (the last one blends the output of the denoiser with the x-step's), and an extrapolation
  ``beta_t`` of the x-step's prior term, ``v_{t-1} + beta_t (v_{t-1} - v_{t-2})`` (inertial HQS),
  initialised at DPIR's loop (gamma = 1, beta = 0).

Training is :func:`dynpnp_jax.tune.tune_dpir` with ``family`` (the same crops, training kernels,
Adam on the logarithms of sigma and rho, cosine decay, Polyak average of the second half,
validation crops; the loop is ``restore``'s ``dpir`` mode with ``relax`` = gamma and ``inertia`` =
beta), with ``--shake-kernels`` synthetic camera-shake kernels added to the training kernels.
Scoring: :func:`dynpnp_jax.tune.evaluate_set3g` (Set3G, Levin k1-k8, x8 as DPIR runs it), DPIR's
schedule and the tuned family side by side. Writes a JSON with the values and the PSNRs;
``--render`` turns the four ``relax`` runs (T = 8, 4; noise 2.55, 7.65) into
``configs/dpir_tuned_relax.py`` (method ``dpir-tuned-relax``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynpnp_jax import tune as tn  # noqa: E402


RUNS = ((2.55, 8), (2.55, 4), (7.65, 8), (7.65, 4))


def result_path(family: str, shake: int, noise: float, iters: int) -> Path:
    return Path(f"results/families-{family}-shake{shake}-{noise:g}-T{iters}.json")


def render_config(shake: int = 40) -> str:
    """The text of ``configs/dpir_tuned_relax.py`` from the four ``--family relax`` runs' JSON."""
    runs = [(n, t, json.loads(result_path("relax", shake, n, t).read_text())) for n, t in RUNS]
    lines = ['"""DPIR deblurring schedules of the larger family: per-iteration ``sigma``, ``mu`` '
             '(rho), ``relax``',
             "(the prior step ``v_t = x_t + relax_t (D(x_t) - x_t)``) and ``inertia`` (the x-step's "
             "prior term",
             "``v_{t-1} + inertia_t (v_{t-1} - v_{t-2})``), tuned by gradient through the unrolled "
             "loop with",
             f"FFDNet-gray on ``shared/data/tune`` crops blurred with ``tune.training_kernels({shake})`` "
             "(the",
             f"``kernels_12.mat`` kernels that are not Levin's, plus {shake} synthetic camera-shake "
             "kernels) -- never",
             "Set3G or a Levin kernel. Initialised from DPIR's loop (``relax = 1``, ``inertia = 0``).",
             "", "Produced by (one run each, about 15 min at T=8 and 7 min at T=4 on 2 cores):", ""]
    lines += [f"    python bench/schedule_families.py --family relax --shake-kernels {shake} "
              f"--noise {n:g} --iters {t}" for n, t, _ in runs]
    lines += [f"    python bench/schedule_families.py --render configs/dpir_tuned_relax.py "
              f"--shake-kernels {shake}", "",
              "Set3G, Levin k1..k8, x8, mean PSNR (dB) (the same runs; method ``dpir-tuned-relax``):",
              "", "    | noise | T | DPIR | tuned relax | held-out crops: DPIR -> tuned |",
              "    |---|---|---|---|---|"]
    lines += [f"    | {n:g} | {t} | {d['set3g_dpir']:.2f} | {d['set3g_tuned']:.2f} | "
              f"{d['val_psnr_dpir']:.2f} -> {d['val_psnr_tuned']:.2f} |" for n, t, d in runs]
    lines += ['"""', "from __future__ import annotations", "",
              "# (noise on the 8-bit scale, iterations) -> per-iteration values ([0, 1] scale for sigma)",
              "TUNED = {"]
    for n, t, d in runs:
        lines.append(f"    ({n:g}, {t}): {{")
        for key in ("sigma", "mu") + tn.RELAXED:
            lines.append(f'        "{key}": [' + ", ".join(f"{x:.6g}" for x in d["values"][key]) + "],")
        lines.append("    },")
    lines += ["}", "", "",
              "def get_config(noise: float = 2.55, iters: int = 8, ensemble: bool = False) -> dict:",
              '    """``make_config`` keyword arguments of the tuned schedule for ``noise`` (8-bit: '
              '2.55 or 7.65)',
              '    and ``iters`` (8 or 4): ``make_config(**get_config(2.55, 4))``."""',
              "    from dynpnp_jax.tune import schedule_kwargs", "",
              "    return schedule_kwargs(TUNED, noise, iters, ensemble)", ""]
    return "\n".join(lines)


def schedule_figure(path, noise: float = 2.55) -> None:
    """Plot the shipped schedules (``configs/dpir_tuned.py``, ``configs/dpir_tuned_relax.py``)
    beside DPIR's for ``noise``: sigma_t, rho_t, relax_t and inertia_t against the iteration, T = 8
    (solid) and T = 4 (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from configs import dpir_tuned, dpir_tuned_relax
    from dynpnp_jax.solver import dpir_schedule

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    colours = {"DPIR": "k", "dpir-tuned": "tab:blue", "dpir-tuned-relax": "tab:red"}
    for iters, style in ((8, "-"), (4, "--")):
        sig, rho = dpir_schedule(iters, noise / 255)
        rows = {"DPIR": {"sigma": sig, "mu": rho, "relax": np.ones(iters), "inertia": np.zeros(iters)},
                "dpir-tuned": {**dpir_tuned.TUNED[(noise, iters)], "relax": np.ones(iters),
                               "inertia": np.zeros(iters)},
                "dpir-tuned-relax": dpir_tuned_relax.TUNED[(noise, iters)]}
        t = np.arange(1, iters + 1)
        for name, vals in rows.items():
            for ax, key in zip(axes, ("sigma", "mu", "relax", "inertia")):
                scale = 255.0 if key == "sigma" else 1.0
                ax.plot(t, np.asarray(vals[key]) * scale, style, marker="o", ms=3,
                        color=colours[name], label=f"{name}, T={iters}")
    for ax, title in zip(axes, ("sigma_t (8-bit)", "rho_t", "relax_t", "inertia_t")):
        ax.set_title(title)
        ax.set_xlabel("iteration")
        if title.startswith(("sigma", "rho")):
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Deblurring schedules, noise {noise:g} (Set3G / Levin: RESULTS.md)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", choices=tn.FAMILIES, default="relax")
    p.add_argument("--noise", type=float, default=2.55, help="8-bit noise level (2.55 or 7.65)")
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shake-kernels", type=int, default=0, metavar="N")
    p.add_argument("--out", default=None, help="JSON file (default results/families-*.json)")
    p.add_argument("--render", default=None, metavar="PATH",
                   help="only write the config file of the four --family relax runs (T=8, 4 at "
                        "noise 2.55, 7.65; their default --out files) to PATH")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="only plot the shipped schedules beside DPIR's for --noise to PNG")
    a = p.parse_args(argv)
    if a.figure:
        schedule_figure(a.figure, a.noise)
        print(f"wrote {a.figure}")
        return 0
    if a.render:
        try:
            Path(a.render).write_text(render_config(a.shake_kernels))
        except FileNotFoundError as err:
            p.error(f"--render: a run is missing ({err.filename}); run the four commands first")
        print(f"wrote {a.render}")
        return 0
    try:
        noise = tn._check_noise(a.noise)
        iters = tn._check_int("iters", a.iters, 1)
        steps = tn._check_int("steps", a.steps, 1)
        crop = tn._check_int("crop", a.crop, 32, tn.TUNE_SIZE)
        batch = tn._check_int("batch", a.batch, 1)
        tn._check_positive("lr", a.lr, "a positive learning rate")
        tn._check_int("shake-kernels", a.shake_kernels, 0)
    except ValueError as err:
        p.error(str(err))
    t0 = time.time()
    r = tn.tune_dpir(noise, iters, steps=steps, crop=crop, batch=batch, lr=a.lr, seed=a.seed,
                     shake=a.shake_kernels, family=a.family)
    values = {k: r[k] for k in ("sigma", "mu") + tn.RELAXED if k in r}
    scores = {name: tn.evaluate_set3g(tn.dpir_kwargs(noise, iters, vals), True)["mean"]
              for name, vals in (("dpir", None), ("tuned", values))}
    if not all(np.isfinite(v) for v in scores.values()):
        raise FloatingPointError(f"schedule_families: a non-finite Set3G mean PSNR: {scores}")
    out = {"family": a.family, "noise": noise, "iters": iters, "shake_kernels": a.shake_kernels,
           "settings": dict(steps=steps, crop=crop, batch=batch, lr=a.lr, seed=a.seed),
           "val_psnr_dpir": r["val_psnr_dpir"], "val_psnr_tuned": r["val_psnr_tuned"],
           "set3g_dpir": scores["dpir"], "set3g_tuned": scores["tuned"], "values": values,
           "seconds": time.time() - t0}
    print(json.dumps({k: v for k, v in out.items() if k != "values"}, indent=1))
    path = Path(a.out) if a.out else result_path(a.family, a.shake_kernels, noise, iters)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"Set3G: DPIR {out['set3g_dpir']:.3f}, tuned {a.family} {out['set3g_tuned']:.3f} dB "
          f"({out['set3g_tuned'] - out['set3g_dpir']:+.3f}); wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
