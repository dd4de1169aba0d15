"""``python -m dynpnp_jax.tune --task dpir``: the objective's gradients (finite, equal to finite
differences, through the public ``restore`` with FFDNet), the frozen fast-backward FFDNet (same
values and gradients), a few Adam steps lowering the loss, the training data (kernels_12 only),
the Set3G evaluation reproducing DPIR's protocol, the config file, and argument errors."""
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dynpnp_jax import tune
from dynpnp_jax.solver import dpir_schedule, make_config

from conftest import require_shared

NOISE = 7.65


@pytest.fixture(autouse=True)
def _full_float32_convs():
    """Finite differences need float32 convolutions (no TF32 on GPUs)."""
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def ffdnet():
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    from dynpnp_jax import load_network

    return load_network("ffdnet-gray")


@pytest.fixture(scope="module")
def cleans():
    require_shared("data", "tune")
    return tune.load_tune_images()


@pytest.fixture(scope="module")
def value_and_grad(ffdnet):
    """The jitted objective and its gradient (T=2) with the plain FFDNet, compiled once."""
    return jax.jit(jax.value_and_grad(tune.dpir_loss_fn(ffdnet, 2, NOISE)))


@pytest.fixture(scope="module")
def tiny_batch(cleans):
    require_shared("data", "kernels", "kernels_12.mat")
    rng = np.random.RandomState(3)
    return tune.make_batch(rng, cleans, tune.training_kernels(), crop=32, batch=2, noise=NOISE)


# ------------------------------------------------------------------ training data
def test_training_data_uses_kernels12_only(cleans, tiny_batch):
    """The 20 tune images; each crop is blurred with a flip/rotation of a kernels_12 kernel
    (never a Levin kernel), truncated to 8 bits, plus noise of the right level."""
    assert len(cleans) == 20 and all(c.shape == (180, 180) for c in cleans)
    y, x, k = tiny_batch
    assert y.shape == x.shape == (2, 32, 32, 1) and k.shape == (2, 25, 25)
    train = [tune._dihedral(kk, m) for kk in tune.training_kernels() for m in range(8)]
    for kk in k:
        assert any(np.allclose(kk, t) for t in train)
    from dynpnp_jax.operators import Blur

    blurred = np.floor(np.asarray(Blur.from_kernel(k)(jnp.asarray(x)), np.float64) * 255 + 1e-6) / 255
    assert abs(np.std(y - blurred) * 255 - NOISE) < 0.6  # 2048 samples
    assert np.allclose(np.round(x * 255), x * 255, atol=1e-4)  # clean crops are 8-bit images


def test_training_kernels_exclude_the_levin_test_kernels():
    """kernels_12.mat holds two of Levin's kernels (#9 = k8, #10 = k7, equal to the last digit):
    tuning must not see them under any flip or rotation; the other 10 are kept."""
    require_shared("data", "kernels", "kernels_12.mat")
    from dynpnp_jax import kernels

    k12, levin, train = kernels.kernels12(), kernels.levin(), tune.training_kernels()
    assert tune.same_kernel(k12[8], levin[7]) and tune.same_kernel(k12[9], levin[6])
    assert tune.same_kernel(np.pad(np.rot90(levin[2]), 3), levin[2])  # flips, padding
    assert len(train) == 10
    assert not any(tune.same_kernel(k, t) for k in train for t in levin)
    kept = [k for k in k12 if not any(tune.same_kernel(k, t) for t in levin)]
    assert all(np.array_equal(a, b) for a, b in zip(train, kept))
    more = tune.training_kernels(shake=3)  # plus synthetic camera-shake kernels, fixed seeds
    assert len(more) == 13 and all(np.array_equal(a, b) for a, b in zip(more, train))
    for i, k in enumerate(more[10:]):
        np.testing.assert_array_equal(k, kernels.camera_shake(tune.SHAKE_SEED + i))
    with pytest.raises(ValueError, match="shake"):
        tune.training_kernels(shake=-1)


# ------------------------------------------------------------------ the frozen FFDNet
def test_frozen_network_same_values_and_input_gradient(ffdnet):
    fast = tune.frozen_network(ffdnet)
    assert fast.variables is ffdnet.variables and type(fast.module) is not type(ffdnet.module)
    x = jnp.asarray(np.random.RandomState(0).rand(2, 22, 19, 1).astype(np.float32))
    s = jnp.asarray([0.02, 0.05])
    np.testing.assert_array_equal(np.asarray(fast.prior(x, s)), np.asarray(ffdnet.prior(x, s)))

    def g(net):
        return jax.jit(jax.grad(lambda x, s: jnp.sum(jnp.sin(3 * net.prior(x, s))),
                                argnums=(0, 1)))(x, s)
    for a, b in zip(g(fast), g(ffdnet)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    # the same module twice: one compilation (the class is cached)
    assert tune.frozen_network(ffdnet).module == fast.module
    assert tune.frozen_network(ffdnet, remat=True).module != fast.module


# ------------------------------------------------------------------ gradients
def test_gradients_finite_and_match_finite_differences(ffdnet, value_and_grad, tiny_batch):
    """d(-PSNR)/d(log sigma_t, log mu_t) through the public restore with the plain FFDNet:
    finite, non-zero, and within a loose band of central differences."""
    iters = 2
    f = jax.jit(tune.dpir_loss_fn(ffdnet, iters, NOISE))
    theta = tune.dpir_theta(iters, NOISE)
    value, grad = value_and_grad(theta, *tiny_batch)
    assert np.isfinite(float(value))
    assert abs(float(value) - float(f(theta, *tiny_batch))) < 1e-4
    eps = 0.05
    for key in ("log_sigma", "log_mu"):
        g = np.asarray(grad[key])
        assert np.all(np.isfinite(g)) and np.any(np.abs(g) > 1e-3)
        for t in range(iters):
            e = jnp.zeros(iters).at[t].set(eps)
            hi = float(f({**theta, key: theta[key] + e}, *tiny_batch))
            lo = float(f({**theta, key: theta[key] - e}, *tiny_batch))
            fd = (hi - lo) / (2 * eps)
            assert abs(fd - g[t]) <= 0.15 * abs(g[t]) + 2e-3, (key, t, fd, g[t])


def test_few_adam_steps_lower_the_loss(value_and_grad, tiny_batch):
    import optax

    f = value_and_grad
    theta = tune.dpir_theta(2, NOISE)
    opt = optax.adam(0.1)
    state = opt.init(theta)
    losses = []
    for _ in range(4):
        value, g = f(theta, *tiny_batch)
        losses.append(float(value))
        updates, state = opt.update(g, state)
        theta = optax.apply_updates(theta, updates)
    losses.append(float(f(theta, *tiny_batch)[0]))
    assert losses[-1] < losses[0] - 0.02, losses


def test_tune_dpir_smoke(ffdnet, cleans):
    r = tune.tune_dpir(NOISE, 2, steps=2, crop=32, batch=2, val_size=2, net=ffdnet,
                       cleans=cleans, verbose=False)
    s0, m0 = dpir_schedule(2, NOISE / 255)
    np.testing.assert_allclose(r["dpir"]["sigma"], s0, rtol=1e-5)
    np.testing.assert_allclose(r["dpir"]["mu"], m0, rtol=1e-5)
    assert len(r["sigma"]) == len(r["mu"]) == 2 and len(r["loss_history"]) == 2
    assert all(np.isfinite(r["sigma"])) and all(v > 0 for v in r["sigma"] + r["mu"])
    assert r["sigma"] != r["dpir"]["sigma"]  # it moved
    assert np.isfinite(r["val_psnr_dpir"]) and np.isfinite(r["val_psnr_tuned"])
    assert r["peak_rss_mib"] > 0
    make_config(**tune.dpir_kwargs(NOISE, 2, r))  # the result is a valid config


def test_tune_kernel_step_smoke(ffdnet, cleans):
    """The A-step sizes (a_step='kernel') by Adam through the loop: they move, stay positive,
    and the run reports the no-A-step reference on the same validation crops."""
    r = tune.tune_kernel_step(NOISE, 2, steps=2, crop=40, batch=1, val_size=1, net=ffdnet,
                              cleans=cleans, verbose=False)
    assert len(r["alpha"]) == 2 and len(r["loss_history"]) == 2
    assert all(0 < a < 1 for a in r["alpha"]) and r["alpha"] != [r["alpha0"]] * 2
    for key in ("val_psnr_start", "val_psnr_tuned", "val_psnr_no_a_step"):
        assert np.isfinite(r[key]) and 10 < r[key] < 60
    with pytest.raises(ValueError, match="alpha0"):
        tune.tune_kernel_step(NOISE, 2, steps=1, alpha0=0.0, net=ffdnet, cleans=cleans)
    for kw, msg in (({"lr": -0.1}, "lr: expected a positive"), ({"lr": float("nan")}, "lr"),
                    ({"batch": 0}, "batch"), ({"scale": 0.0}, "scale")):
        with pytest.raises(ValueError, match=msg):
            tune.tune_kernel_step(NOISE, 2, steps=1, net=ffdnet, cleans=cleans, **kw)


# ------------------------------------------------------------------ evaluation protocol
def test_degradation_is_dpirs_protocol():
    """uint8 convolve (mode='wrap', the result truncated to uint8), / 255, seed 0 noise: checked
    against a hand computation (shifted sums, floor) for one image and kernel."""
    require_shared("data", "set3g")
    from dynpnp_jax import kernels

    gt = tune.set3g_images()["cameraman"]
    assert gt.dtype == np.uint8 and gt.shape == (256, 256)
    k = kernels.levin(3).astype(np.float64)
    y = tune.degrade_dpir(gt, k, 2.55)
    # hand: convolve(x, k)[i, j] = sum_ab k[a, b] x[i + c - a, j + c - b] (circular)
    c = k.shape[0] // 2
    acc = np.zeros(gt.shape)
    for a in range(k.shape[0]):
        for b in range(k.shape[1]):
            acc += k[a, b] * np.roll(gt.astype(np.float64), (a - c, b - c), axis=(0, 1))
    hand = np.floor(acc + 1e-9)
    blurred = np.round((y - np.random.RandomState(0).normal(0, 2.55 / 255, gt.shape + (1,))[..., 0])
                       * 255)
    assert np.mean(blurred == hand) > 0.999 and np.max(np.abs(blurred - hand)) <= 1
    # the exact numbers: scipy on the uint8 image, then DPIR's uint2single and seeded noise
    ref = ndimage.convolve(gt[..., None], k[..., None], mode="wrap")
    assert ref.dtype == np.uint8
    np.random.seed(0)
    want = np.float32(ref / 255.) + np.random.normal(0, 2.55 / 255, ref.shape)
    np.testing.assert_array_equal(y, want[..., 0])


def test_evaluate_set3g_matches_hand_pipeline(ffdnet):
    """One small image and one Levin kernel through evaluate_set3g (kernels zero-padded to one
    size and batched) equal restore on the unpadded kernel, rounded to uint8, PSNR by hand."""
    require_shared("data", "set3g")
    from dynpnp_jax import kernels
    from dynpnp_jax.operators import Blur
    from dynpnp_jax.solver import restore

    gt = tune.set3g_images()["house"][64:128, 96:160]
    kw = tune.dpir_kwargs(NOISE, 2)
    got = tune.evaluate_set3g(kw, False, net=ffdnet, kernel_ids=[3, 4], images={"house": gt})
    k = kernels.levin(3)
    y = tune.degrade_dpir(gt, k, NOISE)[None, ..., None].astype(np.float32)
    out, _ = restore({"prior": ffdnet, "A": Blur.from_kernel(k, 1)}, y, make_config(**kw))
    e = np.uint8(np.round(np.clip(np.asarray(out[0, ..., 0], np.float64), 0, 1) * 255))
    mse = np.mean((e.astype(np.float64) - gt) ** 2)
    assert abs(got["psnr"][("house", 3)] - 10 * np.log10(255 ** 2 / mse)) < 0.01
    assert got["mean"] == pytest.approx(np.mean(list(got["psnr"].values())))
    assert set(got["per_kernel"]) == {3, 4}


def test_evaluate_set3g_never_scores_a_non_finite_image(ffdnet):
    """A restored image with NaN would round to 0 in uint8 and get a (finite) PSNR: ``restore``
    refuses it before it is scored."""
    require_shared("data", "set3g")
    gt = tune.set3g_images()["house"][64:128, 96:160]
    broken = ffdnet.replace(variables=jax.tree_util.tree_map(lambda a: a * jnp.nan,
                                                             ffdnet.variables))
    with pytest.raises(FloatingPointError, match="not finite"):
        tune.evaluate_set3g(tune.dpir_kwargs(NOISE, 2), False, net=broken, kernel_ids=[3],
                            images={"house": gt})


def test_evaluate_set3g_needs_noise_level():
    with pytest.raises(ValueError, match="noise_level"):
        tune.evaluate_set3g({"mode": "dpir", "iters": 2, "sigma": 0.1, "mu": 0.1}, images={})
    with pytest.raises(ValueError, match="mode='dpir'"):
        tune.evaluate_set3g({"mode": "hqs", "noise_level": 0.01}, images={})


# ------------------------------------------------------------------ config file
def test_render_config_round_trip(tmp_path):
    res = [{"noise": 2.55, "iters": 2, "sigma": [0.19, 0.01], "mu": [0.0005, 0.1],
            "seconds": 60.0, "peak_rss_mib": 500.0, "val_psnr_dpir": 30.0, "val_psnr_tuned": 30.2}]
    evals = {(2.55, 2, False): {"dpir": 30.0, "tuned": 30.1}}
    path = tmp_path / "cfg.py"
    path.write_text(tune.render_config(res, "python -m dynpnp_jax.tune --task dpir", evals))
    spec = importlib.util.spec_from_file_location("cfg", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert "python -m dynpnp_jax.tune --task dpir" in mod.__doc__
    kw = mod.get_config(2.55, 2, ensemble=True)
    cfg = make_config(**kw)
    assert cfg.ensemble and cfg.iters == 2
    np.testing.assert_allclose(np.asarray(cfg.sigma), [0.19, 0.01], rtol=1e-6)
    with pytest.raises(KeyError, match="no tuned schedule"):
        mod.get_config(7.65, 2)


@pytest.mark.parametrize("name", ["dpir_tuned", "dpir_tuned_x8"])
def test_shipped_config_is_valid(name):
    import importlib

    mod = importlib.import_module(f"configs.{name}")
    assert mod.TUNED, f"configs/{name}.py has no schedules"
    for (noise, iters), vals in mod.TUNED.items():
        assert noise in tune.DPIR_NOISES and len(vals["sigma"]) == len(vals["mu"]) == iters
        cfg = make_config(**mod.get_config(noise, iters))
        assert cfg.mode == "dpir" and float(cfg.noise) == pytest.approx(noise / 255)
    assert "python -m dynpnp_jax.tune --task dpir" in mod.__doc__
    assert "training_kernels()" in mod.__doc__  # tuned without the Levin kernels
    assert ("--ensemble" in mod.__doc__) == name.endswith("x8")


def test_shipped_relaxed_config_is_valid():
    from configs import dpir_tuned_relax as mod

    assert sorted(mod.TUNED) == sorted((n, t) for n in tune.DPIR_NOISES for t in (8, 4))
    for (noise, iters), vals in mod.TUNED.items():
        assert all(len(vals[k]) == iters for k in ("sigma", "mu", "relax", "inertia"))
        cfg = make_config(**mod.get_config(noise, iters))
        assert cfg.mode == "dpir" and cfg.relaxed
        np.testing.assert_allclose(np.asarray(cfg.relax), vals["relax"], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(cfg.inertia), vals["inertia"], rtol=1e-6, atol=1e-7)
    assert "python -m dynpnp_jax.tune --task dpir --family relax --shake-kernels 40" in mod.__doc__
    assert "Plus 40 synthetic camera-shake kernels" in mod.__doc__  # and never a Levin kernel


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize("argv, message", [
    (["--task", "dpir", "--steps", "0"], "--steps must be a positive"),
    (["--task", "dpir", "--crop", "16"], "--crop must be in"),
    (["--task", "dpir", "--crop", "200"], "--crop must be in"),
    (["--task", "dpir", "--noise", "0"], "8-bit noise level in"),
    (["--task", "dpir", "--noise", "100"], "8-bit noise level in"),
    (["--task", "dpir", "--iters", "8", "0"], "--iters must be positive"),
    (["--task", "dpir", "--batch", "0"], "--batch must be"),
    (["--task", "dpir", "--lr", "-1"], "--lr must be"),
    (["--task", "dpir", "--shake-kernels", "-2"], "--shake-kernels must be"),
    (["--sigma", "30"], "DnCNN-S exists for"),
    (["--iters", "2", "3"], "one --iters value"),
    (["--task", "deblur"], "invalid choice"),
    (["--task", "dpir", "--family", "momentum"], "invalid choice"),
    (["--family", "relax"], "--family: only for --task dpir"),
    (["--task", "kernel-step", "--shake-kernels", "5"], "--shake-kernels: only for --task dpir"),
    (["--seed", "-1"], "--seed must be in [0, 2**32 - 1]"),
    (["--task", "dpir", "--seed", "4294967296"], "--seed must be in [0, 2**32 - 1]"),
    (["--lr", "nan"], "--lr must be a positive number, got nan"),  # denoise used to ignore it
    (["--task", "dpir", "--lr", "inf"], "--lr must be a positive number, got inf"),
    (["--operator", "bogus"], "argument --operator: invalid choice: 'bogus'"),
    (["--task", "dpir", "--operator", "conv"], "--operator conv: only for --task denoise"),
    (["--task", "dpir", "--iters", "1000000"], "--iters must be at most 100 when tuning"),
    (["--task", "dpir", "--out", "/no/such/folder/t.json"],
     "the folder /no/such/folder does not exist; expected a file in an existing folder (checked "
     "now, before the run). Fix: mkdir -p /no/such/folder"),
    (["--out", "/no/such/folder/t.json"], "the folder /no/such/folder does not exist"),
    (["--task", "kernel-step", "--out", "."], "would replace or delete it. Expected a new file"),
    (["--task", "dpir", "--write-config", "/usr"], "--write-config /usr: is a folder"),
])
def test_bad_arguments_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        tune.main(argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_out_file_rules_before_tuning(tmp_path, capsys, monkeypatch):
    """tune --out: an existing file needs --overwrite (or is the --resume file); a --resume file
    holding something else than tune's JSON object is one clear error; all before tuning."""
    monkeypatch.setattr(tune, "run_dpir", lambda *a, **k: pytest.fail("tuned before the checks"))
    old = tmp_path / "old.json"
    old.write_text("[1, 2]")
    for argv, message in (
            (["--out", str(old)], f"--out {old}: exists; expected a new file. Fix: pass another "
                                  f"--out, or --overwrite"),
            (["--resume", str(old)], "--resume: " + f"{old}: holds a list; expected the JSON "
                                     "object an --out of `python -m dynpnp_jax.tune --task dpir`"),
            (["--resume", str(tmp_path / "none.json")], "--resume: [Errno 2]")):
        with pytest.raises(SystemExit) as err:
            tune.main(["--task", "dpir", *argv])
        assert err.value.code == 2 and message in capsys.readouterr().err
    assert old.read_text() == "[1, 2]"


def test_output_file_never_replaces_what_appeared(tmp_path, capsys):
    from dynpnp_jax.paths import OutputFile

    target = tmp_path / "t.json"
    out = OutputFile(target, "--out")
    assert out.write("one") == target and target.read_text() == "one"
    assert out.write("two") == target and target.read_text() == "two"  # its own checkpoint
    target.write_text("a user's edit")  # changed under the run
    assert out.write("three") == tmp_path / "t-1.json"
    assert target.read_text() == "a user's edit" and (tmp_path / "t-1.json").read_text() == "three"
    assert "appeared or changed during the run" in capsys.readouterr().err
    assert out.write("four") == tmp_path / "t-1.json"  # from then on, its own new name
    fresh = OutputFile(tmp_path / "u.json", "--out")
    (tmp_path / "u.json").write_text("another run's")  # appeared during the run
    assert fresh.write("mine") == tmp_path / "u-1.json"
    assert (tmp_path / "u.json").read_text() == "another run's"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("kwargs, message", [
    (dict(noise=-1, iters=8), "noise"), (dict(noise=2.55, iters=0), "iters"),
    (dict(noise=2.55, iters=8, steps=0), "steps"), (dict(noise=2.55, iters=8, crop=31), "crop"),
    (dict(noise=2.55, iters=8, lr=0.0), "lr"), (dict(noise=2.55, iters=8, batch=0), "batch"),
    (dict(noise=2.55, iters=8, shake=-1), "shake"),
])
def test_tune_dpir_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tune.tune_dpir(**kwargs, verbose=False)


def test_loss_name_checked():
    with pytest.raises(ValueError, match="'psnr' or 'mse'"):
        tune.dpir_loss_fn(None, 2, 2.55, loss="l1")


def test_resume_reuses_finished_runs_and_checks_settings(tmp_path, ffdnet):
    settings = dict(steps=2, crop=32, batch=2, lr=0.03, seed=0, loss="psnr", quantize=True,
                    remat=False, average_from=0.5)
    run = {"noise": 7.65, "iters": 2, "sigma": [0.1, 0.03], "mu": [0.01, 0.2],
           "settings": settings}
    path = tmp_path / "prev.json"
    path.write_text(__import__("json").dumps({"results": [run], "evals": []}))
    prev = tune._load_previous(path, settings)
    out = tune.run_dpir([7.65], [2], **{k: v for k, v in settings.items() if k != "average_from"},
                        evaluate=False, verbose=False, previous=prev)
    assert out["results"] == [run]  # nothing re-tuned
    with pytest.raises(ValueError, match="other settings"):
        tune._load_previous(path, {**settings, "steps": 3})


# ------------------------------------------------------------------ the relaxed family
def _reference_loop(net, theta, y, k, iters: int):
    """The ``dpir`` loop with relaxation and extrapolation, written out in Python as the equations
    read (exact x-step, circular blur ``k``): the reference ``restore`` is checked against."""
    from dynpnp_jax import steps as st
    from dynpnp_jax.operators import Blur

    op = Blur.from_kernel(k)
    sig, mu = jnp.exp(theta["log_sigma"]), jnp.exp(theta["log_mu"])
    gam, beta = theta["relax"], theta["inertia"]
    x = v = vprev = y
    for t in range(iters):
        prior_in = v + beta[t] * (v - vprev)
        x = op.normal_solve(op.adjoint(y) + mu[t] * prior_in, mu[t])
        d = st.prior_step(net, x, jnp.broadcast_to(sig[t], (y.shape[0],)))
        vprev, v = v, x + gam[t] * (d - x)
    return v


def test_relaxed_family_loss_is_the_written_out_loop(ffdnet, tiny_batch):
    """``dpir_loss_fn`` with ``dpir_theta(family='relax')`` runs the written-out loop: DPIR's at
    relax = 1, inertia = 0; relaxation and extrapolation move it and get gradients."""
    from dynpnp_jax.operators import Blur
    from dynpnp_jax.solver import restore

    y, x, k = tiny_batch
    iters = 3
    ref, _ = restore({"prior": ffdnet, "A": Blur.from_kernel(k)}, y,
                     make_config(**tune.dpir_kwargs(NOISE, iters), clip_output=False,
                                 keep_images=False))
    th = tune.dpir_theta(iters, NOISE, family="relax")
    assert set(th) == {"log_sigma", "log_mu", "relax", "inertia"}
    out = _reference_loop(ffdnet, th, jnp.asarray(y), jnp.asarray(k), iters)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)
    moved_th = {**th, "relax": jnp.full(iters, 0.8), "inertia": jnp.full(iters, 0.3)}
    moved = _reference_loop(ffdnet, moved_th, jnp.asarray(y), jnp.asarray(k), iters)
    assert float(jnp.max(jnp.abs(moved - out))) > 1e-3
    f = tune.dpir_loss_fn(ffdnet, iters, NOISE)
    mse = jnp.mean((jnp.clip(moved, 0, 1) - x) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(float(f(moved_th, y, x, k)),
                               float(jnp.mean(10 * jnp.log10(mse))), atol=1e-3)
    g = jax.grad(f)(moved_th, y, x, k)
    assert all(bool(jnp.all(jnp.isfinite(v))) and float(jnp.max(jnp.abs(v))) > 0
               for v in (g["relax"], g["inertia"][1:]))
    assert tune.theta_values(moved_th)["inertia"] == pytest.approx([0.3] * iters)
    with pytest.raises(ValueError, match="family"):
        tune.dpir_theta(iters, NOISE, family="momentum")


def test_relaxed_dpir_mode_is_the_written_out_loop(ffdnet, tiny_batch):
    """``make_config('dpir', relax=..., inertia=...)`` runs the written-out loop (so the shipped
    relaxed schedules mean what they were tuned for), differentiably; at relax = 1, inertia = 0 it
    is DPIR's loop."""
    from dynpnp_jax.operators import Blur
    from dynpnp_jax.solver import restore

    y, _, k = tiny_batch
    iters, relax, inertia = 3, [1.1, 0.9, 0.7], [0.0, 0.4, -0.5]
    params = {"prior": ffdnet, "A": Blur.from_kernel(k)}
    kw = dict(**tune.dpir_kwargs(NOISE, iters), clip_output=False, keep_images=False)
    out, _ = restore(params, y, make_config(**kw, relax=relax, inertia=inertia))
    th = {**tune.dpir_theta(iters, NOISE), "relax": jnp.asarray(relax),
          "inertia": jnp.asarray(inertia)}
    ref = _reference_loop(ffdnet, th, jnp.asarray(y), jnp.asarray(k), iters)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)
    plain, _ = restore(params, y, make_config(**kw))
    same, _ = restore(params, y, make_config(**kw, relax=1.0, inertia=0.0))
    np.testing.assert_allclose(np.asarray(same), np.asarray(plain), atol=1e-6)
    base = make_config(**kw, relax=1.0, inertia=0.0)
    g = jax.grad(lambda r: jnp.mean(restore(params, y, base.with_values(relax=r))[0]))(
        jnp.asarray(relax))
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0


def test_cli_family_relax_writes_a_loadable_config(tmp_path, ffdnet, cleans):
    """``python -m dynpnp_jax.tune --task dpir --family relax``: the run tunes relax and inertia
    too (they move from DPIR's 1 and 0), records the family in its settings, and the written
    config carries all four per-iteration numbers into a valid ``make_config``."""
    import json

    cfg_path, out_path = tmp_path / "relax_cfg.py", tmp_path / "relax.json"
    assert tune.main(["--task", "dpir", "--family", "relax", "--noise", "7.65", "--iters", "2",
                      "--steps", "2", "--crop", "32", "--batch", "1", "--no-eval",
                      "--write-config", str(cfg_path), "--out", str(out_path)]) == 0
    run = json.loads(out_path.read_text())["results"][0]
    assert run["settings"]["family"] == "relax"
    assert run["relax"] != [1.0, 1.0] and run["inertia"][1] != 0.0
    spec = importlib.util.spec_from_file_location("relax_cfg", cfg_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert "--family relax" in mod.__doc__ and "relax_t" in mod.__doc__
    kw = mod.get_config(7.65, 2)
    np.testing.assert_allclose(kw["relax"], run["relax"], rtol=1e-5)
    np.testing.assert_allclose(kw["inertia"], run["inertia"], rtol=1e-5, atol=1e-7)
    cfg = make_config(**kw)
    assert cfg.relaxed
    with pytest.raises(ValueError, match="other settings"):  # a base run is not resumed as relax
        tune._load_previous(out_path, {**run["settings"], "family": "base"})


def test_relax_family_stays_in_the_solvers_domain(ffdnet, cleans):
    """Projected Adam: a learning rate large enough to throw relax / inertia out of (0, 2] and
    (-1, 1) is clipped back onto the box after every step (and counted), so the tuned schedule
    is one ``make_config`` accepts (a T=16 run at the default lr had left it: inertia -1.29)."""
    theta = {"log_sigma": jnp.zeros(3), "relax": jnp.asarray([-0.5, 1.0, 2.5]),
             "inertia": jnp.asarray([0.0, -1.3, 0.995])}
    out, hit = tune.project_theta(theta)
    assert hit == 4
    np.testing.assert_allclose(out["relax"], [tune.RELAX_BOX[0], 1.0, 2.0])
    np.testing.assert_allclose(out["inertia"], [0.0, -0.99, 0.99])
    assert tune.project_theta({"log_sigma": jnp.zeros(2)})[1] == 0  # base family: nothing to clip
    r = tune.tune_dpir(NOISE, 2, steps=3, crop=32, batch=1, val_size=1, lr=3.0, family="relax",
                       net=ffdnet, cleans=cleans, verbose=False)
    assert r["projected"] > 0
    assert all(tune.RELAX_BOX[0] * (1 - 1e-6) <= v <= 2 for v in r["relax"])  # float32 box
    assert all(abs(v) <= 0.99 * (1 + 1e-6) for v in r["inertia"])
    assert make_config(**tune.dpir_kwargs(NOISE, 2, r)).relaxed
