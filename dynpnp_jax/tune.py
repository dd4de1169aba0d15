"""Tune the numeric hyper-parameters of ``gradient`` mode by gradient descent (optax).

    python -m dynpnp_jax.tune --sigma 15 25 50 --iters 2 --steps 40

The hyper-parameters are traced arrays of the jitted solver, so the restored image is
differentiable with respect to ``delta_t``, ``mu_t`` and ``alpha_t``. We minimise the mean
squared error on ``shared/data/tune`` -- 20 of DnCNN's 400 training images, disjoint from Set12
and BSD68 -- under the ``standard`` noise protocol, on random crops (to keep a CPU run short), with
Adam on the logarithms (so they stay positive). Test sets are never looked at. The command
prints the dictionary for ``configs/gradient_tuned.py`` and the tune-set PSNR of the network
alone and of the tuned loop on the full tune images.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np


def _tune_images(limit=None):
    from .data import load_dataset
    from .data.protocols import get_protocol
    from . import paths

    root = paths.data_dir()
    if root is None or not (root / "tune").is_dir():
        raise SystemExit("tune: shared/data/tune not found; set DYNPNP_DATA to a folder with tune/")
    ex = load_dataset("folder", data_dir=root / "tune", limit=limit)
    proto = get_protocol("standard")
    return [proto.prepare(e["image"], e["name"])[0] for e in ex], proto


def tune(sigma: float, *, iters: int = 2, steps: int = 40, crop: int = 96, lr: float = 0.1,
         operator: str = "gain", seed: int = 0, init=None, verbose: bool = True) -> dict:
    """Returns the tuned ``make_config`` kwargs for ``sigma`` and the tune-set PSNRs."""
    from . import load_network, make_config, restore

    net = load_network(f"dncnn-s{int(sigma)}")
    cleans, proto = _tune_images()
    rng = np.random.RandomState(seed)
    init = init or {"delta": 0.3, "mu": 0.3, "alpha": 1e-3}
    theta = {k: jnp.full((iters,), np.log(v), jnp.float32) for k, v in init.items()}
    base = make_config("gradient", iters=iters, operator=operator, keep_images=False)

    def loss_fn(th, y, clean):
        cfg = base.with_values(**{k: jnp.exp(v) for k, v in th.items()})
        out, _ = restore({"prior": net}, y, cfg)
        return jnp.mean((out - clean) ** 2)

    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    import optax
    from tqdm.auto import tqdm

    opt = optax.adam(lr)
    state = opt.init(theta)
    noisy = [proto.degrade(c, sigma, "") for c in cleans]
    for step in (bar := tqdm(range(steps), desc=f"tune sigma={sigma}", disable=not verbose)):
        ys, cs = [], []
        for i in rng.choice(len(cleans), size=8, replace=False):
            h, w = cleans[i].shape[:2]
            t, l = rng.randint(0, h - crop + 1), rng.randint(0, w - crop + 1)
            ys.append(noisy[i][t:t + crop, l:l + crop])
            cs.append(cleans[i][t:t + crop, l:l + crop])
        loss, g = grad_fn(theta, jnp.asarray(np.stack(ys)), jnp.asarray(np.stack(cs)))
        updates, state = opt.update(g, state)
        theta = optax.apply_updates(theta, updates)
        bar.set_postfix(psnr=f"{-10 * np.log10(float(loss)):.2f}")
    values = {k: [float(x) for x in np.exp(np.asarray(v))] for k, v in theta.items()}
    kwargs = {"mode": "gradient", "iters": iters, "operator": operator, **values}
    # score on the full tune images: network alone vs the tuned loop (standard protocol)

    def mean_psnr(cfg):
        ps = []
        for c, y in zip(cleans, noisy):
            out, _ = restore({"prior": net}, y[None], cfg)
            ps.append(proto.evaluate(np.asarray(out[0]), {"reference": np.uint8(np.round(c * 255))})["psnr"])
        return float(np.mean(ps))

    return {"sigma": sigma, "kwargs": kwargs, "tune_psnr_prior": mean_psnr(make_config("prior")),
            "tune_psnr_tuned": mean_psnr(make_config(**kwargs))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dynpnp_jax.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sigma", type=float, nargs="+", default=[15, 25, 50])
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--operator", default="gain")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    results = {}
    for s in args.sigma:
        t0 = time.time()
        r = tune(s, iters=args.iters, steps=args.steps, crop=args.crop, operator=args.operator)
        r["seconds"] = time.time() - t0
        results[int(s)] = r
        print(json.dumps(r))
    print("\nGRADIENT_DENOISE = {")
    for s, r in results.items():
        print(f"    {s}: {json.dumps(r['kwargs'])},")
    print("}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
