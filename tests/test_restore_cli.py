"""The restore command (``python -m dynpnp_jax.restore``) and its I/O, end to end on small
pictures (48x48 crops, 2 iterations): each task restores (PSNR gain over the degraded input),
outputs keep size, channels and bit depth, and every bad input is refused before anything is
written, with a message that names the file or argument."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from dynpnp_jax import imageio, restore_cli

ROOT = Path(__file__).resolve().parents[1]


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2))


def _run(argv, capsys):
    rc = restore_cli.main([str(a) for a in argv] + ["--no-progress"])
    err = capsys.readouterr().err
    return rc, err


def _files(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def small(tmp_path):
    """A random 48x48 colour and gray PNG (for the checks that stop before restoring)."""
    rng = np.random.RandomState(0)
    col = tmp_path / "col.png"
    gray = tmp_path / "gray.png"
    imageio.write_image(col, rng.rand(48, 48, 3))
    imageio.write_image(gray, rng.rand(48, 48, 1))
    return col, gray


def _clean_crop(name="butterfly_color.png", size=48, at=(100, 100), gray=False):
    p = require_shared("data", "ircnn_real", "inpaint", name)
    x, _ = imageio.read_image(p)
    x = x[:, at[0]:at[0] + size, at[1]:at[1] + size]
    return x.mean(-1, keepdims=True) if gray else x


@pytest.fixture(scope="module")
def ffdnet():
    require_shared("upstream", "ffdnet", "FFDNet_color.mat")
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")


# ----------------------------------------------------------------------- the module trap
def test_module_runs_and_import_keeps_the_function():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-m", "dynpnp_jax.restore", "--help"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
             subprocess.Popen([sys.executable, "-c",
                               "import dynpnp_jax\n"
                               "try:\n    import dynpnp_jax.restore\n"
                               "except ImportError as e:\n    print('refused:', e)\n"
                               "print(type(dynpnp_jax.restore).__name__)\n"
                               "from dynpnp_jax import restore\nprint(callable(restore))"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)]
    (h_out, h_err), (i_out, i_err) = [p.communicate(timeout=300) for p in procs]
    assert procs[0].returncode == 0, h_err
    assert "python -m dynpnp_jax.restore" in h_out and "--task" in h_out
    assert procs[1].returncode == 0, i_err
    lines = i_out.split()
    assert "refused:" in i_out and "restore_cli" in i_out
    assert lines[-2:] == ["function", "True"], i_out


# ----------------------------------------------------------------------------- imageio
@pytest.mark.parametrize("suffix,bits", [(".png", 8), (".png", 16), (".tif", 16), (".bmp", 8)])
@pytest.mark.parametrize("channels", [1, 3])
def test_imageio_round_trip_keeps_depth(tmp_path, suffix, bits, channels):
    x = np.random.RandomState(1).rand(1, 21, 34, channels).astype(np.float32)
    p = tmp_path / f"a{suffix}"
    info = imageio.write_image(p, x, bits=bits)
    y, got = imageio.read_image(p)
    assert (got.bits, got.channels, got.height, got.width) == (bits, channels, 21, 34) == \
        (info.bits, info.channels, info.height, info.width)
    assert np.abs(y - x).max() <= 0.5 / (2 ** bits - 1) + 1e-6
    assert _files(tmp_path) == [p.name]  # no temporary file left


def test_imageio_write_is_atomic(tmp_path, monkeypatch):
    """An interrupt while the file is being encoded leaves neither the file nor a temp file,
    and an older file at the destination stays as it was."""
    p = tmp_path / "out.png"
    imageio.write_image(p, np.zeros((8, 8, 1)))
    before = p.read_bytes()

    def boom(self, fp, *a, **k):
        fp.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        imageio.write_image(p, np.ones((8, 8, 1)))
    assert p.read_bytes() == before and _files(tmp_path) == ["out.png"]


# ------------------------------------------------------------------------- bad input
def _bad(capsys, argv, *needles, out=None):
    rc, err = _run(argv, capsys)
    assert rc == 2, err
    for n in needles:
        assert n in err, (n, err)
    if out is not None:
        assert not Path(out).exists() or _files(Path(out)) == [], _files(Path(out))
    return err


def test_bad_input_files(tmp_path, small, capsys):
    col, _ = small
    out = tmp_path / "out"
    _bad(capsys, [tmp_path / "nope.png", "-o", out, "--task", "denoise", "--noise", "5"],
         "nope.png", "not found", out=out)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a picture")
    _bad(capsys, [col, junk, "-o", out, "--task", "denoise", "--noise", "5"],
         "junk.png", "cannot read", "Fix", out=out)
    trunc = tmp_path / "trunc.png"
    data = col.read_bytes()
    trunc.write_bytes(data[:len(data) // 2])
    _bad(capsys, [col, trunc, "-o", out, "--task", "denoise", "--noise", "5"],
         "trunc.png", "truncated", out=out)


@pytest.mark.parametrize("noise", ["-1", "nan", "inf", "lots"])
def test_bad_noise(tmp_path, small, capsys, noise):
    _bad(capsys, [small[0], "-o", tmp_path / "o.png", "--task", "denoise", "--noise", noise],
         "--noise", "fix")
    assert not (tmp_path / "o.png").exists()


def test_bad_kernels(tmp_path, small, capsys):
    col, _ = small
    out = tmp_path / "out"
    zero = tmp_path / "zero.npy"
    np.save(zero, np.zeros((5, 5)))
    _bad(capsys, [col, "-o", out, "--task", "deblur", "--kernel", zero, "--noise", "2"],
         "--kernel", "zero.npy", "positive total mass", out=out)
    neg = tmp_path / "neg.npy"
    np.save(neg, -np.ones((5, 5)))
    _bad(capsys, [col, "-o", out, "--task", "deblur", "--kernel", neg, "--noise", "2"],
         "neg.npy", "positive total mass", out=out)
    mostly_neg = tmp_path / "mneg.npy"
    k = -np.ones((5, 5))
    k[2, 2] = 30.0
    np.save(mostly_neg, k)
    _bad(capsys, [col, "-o", out, "--task", "deblur", "--kernel", mostly_neg, "--noise", "2"],
         "mneg.npy", "non-negative", out=out)
    big = tmp_path / "big.png"
    Image.fromarray(np.full((65, 65), 255, np.uint8)).save(big)
    _bad(capsys, [col, "-o", out, "--task", "deblur", "--kernel", big, "--noise", "2"],
         "big.png", "65x65 kernel is larger than the 48x48 picture", out=out)
    _bad(capsys, [col, "-o", out, "--task", "deblur", "--noise", "2"], "needs --kernel", out=out)


def test_bad_scale_mask_prior(tmp_path, small, capsys):
    col, gray = small
    out = tmp_path / "out"
    _bad(capsys, [col, "-o", out, "--task", "sr", "--scale", "3", "--kernel", "bicubic:2"],
         "--scale 3 does not fit --kernel bicubic:2", "fix", out=out)
    _bad(capsys, [col, "-o", out, "--task", "sr"], "needs --scale", out=out)
    mask = tmp_path / "m.png"
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(mask)
    _bad(capsys, [col, "-o", out, "--task", "inpaint", "--mask", mask, "--noise", "0"],
         "m.png", "40x48 mask for a 48x48 picture", out=out)
    full = tmp_path / "full.png"
    Image.fromarray(np.full((48, 48), 255, np.uint8)).save(full)
    _bad(capsys, [col, "-o", out, "--task", "inpaint", "--mask", full, "--noise", "0"],
         "every pixel is marked missing", "--mask-missing black", out=out)
    _bad(capsys, [col, "-o", out, "--task", "denoise", "--noise", "5", "--prior", "ffdnet-gray"],
         "--prior ffdnet-gray", "colour", "--prior ffdnet-color", out=out)
    _bad(capsys, [gray, "-o", out, "--task", "denoise", "--noise", "5", "--prior", "ffdnet-color"],
         "--prior ffdnet-color", "gray", out=out)


def test_bad_outputs(tmp_path, small, capsys):
    col, gray = small
    digest = hashlib.sha256(col.read_bytes()).hexdigest()
    _bad(capsys, [col, "-o", col, "--task", "denoise", "--noise", "5", "--overwrite"],
         "is an input file", "never overwrites")
    _bad(capsys, [col, gray, "-o", tmp_path, "--task", "denoise", "--noise", "5", "--overwrite"],
         "is an input file")
    assert hashlib.sha256(col.read_bytes()).hexdigest() == digest
    _bad(capsys, [col, gray, "-o", tmp_path / "one.png", "--task", "denoise", "--noise", "5"],
         "names one picture but 2 inputs", "-o a folder")
    exists = tmp_path / "exists.png"
    exists.write_bytes(b"mine")
    _bad(capsys, [col, "-o", exists, "--task", "denoise", "--noise", "5"], "exists",
         "--overwrite")
    assert exists.read_bytes() == b"mine"
    if os.geteuid() == 0:  # root writes into a chmod 555 folder; /sys refuses everyone
        if not os.path.isdir("/sys"):
            pytest.skip("no read-only folder available as root")
        ro = Path("/sys")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
    _bad(capsys, [col, "-o", ro / "dynpnp_out.png", "--task", "denoise", "--noise", "5"],
         "cannot write in folder", "read-only", "writable")
    assert not (ro / "dynpnp_out.png").exists()


# ------------------------------------------------------------------------- end to end
def test_denoise_16bit_colour_and_interrupt(tmp_path, capsys, monkeypatch, ffdnet):
    """Denoising keeps a 16-bit colour PNG 16-bit and gains > 4 dB at sigma 15; an interrupt
    after the first picture keeps that output, writes nothing else, exits 130."""
    clean = _clean_crop()
    rng = np.random.RandomState(0)
    a = tmp_path / "in" / "a16.png"
    b = tmp_path / "in" / "b.png"
    a.parent.mkdir()
    noisy = np.clip(clean + rng.normal(0, 15 / 255, clean.shape), 0, 1)
    imageio.write_image(a, noisy, bits=16)
    imageio.write_image(b, noisy)
    out = tmp_path / "out"
    real = restore_cli.restore_photo
    calls = []

    def interrupted(*args, **kw):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(restore_cli, "restore_photo", interrupted)
    rc, err = _run([a.parent, "-o", out, "--task", "denoise", "--noise", "15"], capsys)
    assert rc == 130 and "interrupted after 1 of 2" in err, err
    assert _files(out) == ["a16.png"]  # the finished output, no partial or temporary file
    y, info = imageio.read_image(out / "a16.png")
    assert (info.bits, info.channels, info.height, info.width) == (16, 3, 48, 48)
    gain = _psnr(y, clean) - _psnr(noisy, clean)
    assert gain > 4.0, gain
    # the rerun refuses the finished output unless --overwrite
    monkeypatch.setattr(restore_cli, "restore_photo", real)
    rc, err = _run([a.parent, "-o", out, "--task", "denoise", "--noise", "15"], capsys)
    assert rc == 2 and "a16.png" in err and "--overwrite" in err


def test_deblur_gray_file_output_and_log(tmp_path, capsys, ffdnet):
    """A gray 'photograph' (a frame of a larger blurred scene, noise 2/255) with its kernel as
    a PNG: -o FILE writes that file (not a folder), the output gains over the blurred input, and
    the log records the noise level and time."""
    from scipy.signal import fftconvolve

    from dynpnp_jax import kernels

    k = kernels.gaussian(1.6, 9)
    scene = _clean_crop(size=56, gray=True)[0, ..., 0]
    frame = fftconvolve(scene, k, mode="valid")  # 48x48: no pixel saw a wrapped scene
    clean = scene[4:-4, 4:-4]
    y = frame + np.random.RandomState(0).normal(0, 2 / 255, frame.shape)
    src = tmp_path / "blurry.png"
    imageio.write_image(src, y)
    kfile = tmp_path / "blurry_kernel.png"
    Image.fromarray(np.uint8(np.round(255 * k / k.max()))).save(kfile)
    dst = tmp_path / "photo.png"
    log = tmp_path / "log.jsonl"
    rc, err = _run([src, "-o", dst, "--task", "deblur", "--kernel", "{stem}_kernel.png",
                    "--noise", "2", "--iters", "2", "--log", log], capsys)
    assert rc == 0, err
    assert dst.is_file()
    x, info = imageio.read_image(dst)
    y8, _ = imageio.read_image(src)
    assert (info.channels, info.height, info.width) == (1, 48, 48)
    gain = _psnr(x[0, ..., 0], clean) - _psnr(y8[0, ..., 0], clean)
    assert gain > 1.0, gain
    rec = json.loads(log.read_text())
    assert rec["noise"] == 2.0 and rec["noise_source"] == "given" and rec["seconds"] > 0
    assert rec["kernel_shape"] == [9, 9] and rec["prior"] == "ffdnet-gray"
    assert rec["clipped"] == 0.0  # nothing at 255


def test_deblur_auto_noise_floor(tmp_path, capsys, ffdnet):
    """--noise auto on a blurred picture without noise: the estimate is below 1/255, the solver
    gets the floor (1/255, or --noise-floor), and the message says so (--effective-noise off:
    the floored sensor level alone; the effective level: tests/test_effective_noise.py)."""
    pytest.importorskip("dynpnp_jax.noise_estimation")
    from scipy.signal import fftconvolve

    from dynpnp_jax import kernels

    k = kernels.gaussian(1.6, 9)
    frame = fftconvolve(_clean_crop(size=56, gray=True)[0, ..., 0], k, mode="valid")
    src = tmp_path / "b.png"
    imageio.write_image(src, frame)
    np.save(tmp_path / "k.npy", k)
    log = tmp_path / "log.jsonl"
    for floor in ("1", "1.5"):
        rc = restore_cli.main([str(src), "-o", str(tmp_path / f"o{floor}.png"), "--task", "deblur",
                               "--kernel", str(tmp_path / "k.npy"), "--iters", "2",
                               "--noise-floor", floor, "--effective-noise", "off",
                               "--log", str(log), "--no-progress"])
        assert rc == 0
    out = capsys.readouterr().out
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["noise"] for r in recs] == [1.0, 1.5]
    assert all(r["noise_estimate"] < 1.0 and "floor" in r["noise_source"] for r in recs), recs
    assert "(auto: estimate" in out and "floor)" in out
    rc, err = _run([src, "-o", tmp_path / "x.png", "--task", "deblur", "--kernel",
                    tmp_path / "k.npy", "--noise-floor", "nan"], capsys)
    assert rc == 2 and "--noise-floor" in err


def test_sr_and_inpaint(tmp_path, capsys, ffdnet):
    """SR x2 with the bicubic down-sampler: 96x96 from 48x48, closer to the truth than
    nearest-neighbour up-sampling; inpainting a colour crop with half its pixels missing (mask
    white = missing, or black = missing with --mask-missing black: the same result)."""
    require_shared("data", "kernels", "kernels_bicubicx234.mat")
    from dynpnp_jax import kernels
    from dynpnp_jax.operators import Downsample

    hr = _clean_crop(size=96, gray=True)
    lr = np.asarray(Downsample.from_kernel(kernels.bicubic(2), 2, 1)(hr))
    src = tmp_path / "lr.png"
    imageio.write_image(src, lr)
    rc, err = _run([src, "-o", tmp_path / "hr.png", "--task", "sr", "--scale", "2", "--noise",
                    "1", "--iters", "2"], capsys)
    assert rc == 0, err
    x, info = imageio.read_image(tmp_path / "hr.png")
    assert (info.height, info.width, info.channels) == (96, 96, 1)
    lr8, _ = imageio.read_image(src)
    nearest = np.repeat(np.repeat(lr8, 2, 1), 2, 2)
    assert _psnr(x, hr) > _psnr(nearest, hr) + 1.0, (_psnr(x, hr), _psnr(nearest, hr))

    clean = _clean_crop()
    missing = np.random.RandomState(0).rand(48, 48) < 0.5
    src = tmp_path / "holes.png"
    imageio.write_image(src, np.where(missing[None, ..., None], 0.0, clean))
    white = tmp_path / "holes_mask.png"
    Image.fromarray(np.uint8(255 * missing)).save(white)
    black = tmp_path / "keep.png"
    Image.fromarray(np.uint8(255 * ~missing)).save(black)
    outs = []
    for mask, conv in ((white, "white"), (black, "black")):
        dst = tmp_path / f"filled_{conv}.png"
        rc, err = _run([src, "-o", dst, "--task", "inpaint", "--mask", mask, "--mask-missing",
                        conv, "--noise", "0", "--iters", "2"], capsys)
        assert rc == 0, err
        outs.append(imageio.read_image(dst)[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert outs[0].shape == (1, 48, 48, 3)
    assert _psnr(outs[0], clean) > 24.0, _psnr(outs[0], clean)


def test_python_snippet_from_docs(tmp_path, monkeypatch, ffdnet):
    """docs/restore.md's five lines of Python run as written (on a crop of the picture it
    names, with its kernel; 2 iterations instead of 8 to keep the test short)."""
    text = (ROOT / "docs" / "restore.md").read_text()
    code = re.search(r"## In Python.*?```python\n(.*?)```", text, re.S).group(1)
    names = re.findall(r'"(\.\./shared/[^"]+)"', code)
    assert len(names) == 2, names
    picture, kernel = (ROOT / n for n in names)
    require_shared(*Path(names[0]).parts[2:])
    crop = tmp_path / "crop.png"
    Image.open(picture).crop((200, 150, 264, 214)).save(crop)
    code = code.replace(names[0], str(crop)).replace(names[1], str(kernel))
    monkeypatch.setitem(restore_cli.ITERS, "deblur", 2)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/restore.md", "exec"), {})
    written = [p for p in tmp_path.iterdir() if p.name != "crop.png"]
    assert len(written) == 1
    x, info = imageio.read_image(written[0])
    assert (info.height, info.width, info.channels, info.bits) == (64, 64, 3, 8)


def test_noise_auto_is_the_estimate(tmp_path, capsys, ffdnet):
    """--noise auto (the default) hands the solver estimate_noise_level's value for the file,
    prints and logs it, and denoises (> 3 dB at sigma 15)."""
    ne = pytest.importorskip("dynpnp_jax.noise_estimation")
    clean = _clean_crop()
    noisy = np.clip(clean + np.random.RandomState(1).normal(0, 15 / 255, clean.shape), 0, 1)
    src = tmp_path / "n.png"
    imageio.write_image(src, noisy)
    y8, _ = imageio.read_image(src)
    want = float(ne.estimate_noise_level(y8)[0]) * 255
    log = tmp_path / "log.jsonl"
    rc = restore_cli.main([str(src), "-o", str(tmp_path / "d.png"), "--task", "denoise",
                           "--log", str(log), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    rec = json.loads(log.read_text())
    assert rec["noise_source"] == "auto" and abs(rec["noise"] - want) < 1e-3, (rec, want)
    assert f"noise {want:.2f}/255 (auto)" in out
    assert 8 < want < 20  # the estimator sees the sigma-15 noise (clipped at 0 and 1)
    x, _ = imageio.read_image(tmp_path / "d.png")
    assert _psnr(x, clean) - _psnr(y8, clean) > 3.0


def test_diverged_loop_retried_only_for_auto_noise(tmp_path, capsys, monkeypatch, ffdnet):
    """A loop that diverges (the solver's FloatingPointError) is run again at twice an auto
    level, and said so (--effective-noise off: its pilot would see the first divergence); a given level is never changed: that picture fails (exit 1, no output,
    the fix named) and the next one is still restored."""
    pytest.importorskip("dynpnp_jax.noise_estimation")
    import dynpnp_jax as dp

    real, seen = dp.restore, []

    def diverges_once(params, y, cfg, **kw):
        seen.append(float(cfg.noise) * 255)
        if len(seen) == 1:
            raise FloatingPointError("the loop diverged: (test)")
        return real(params, y, cfg, **kw)

    monkeypatch.setattr(dp, "restore", diverges_once)
    rng = np.random.RandomState(0)
    a, b = tmp_path / "in" / "a.png", tmp_path / "in" / "b.png"
    a.parent.mkdir()
    for p in (a, b):
        imageio.write_image(p, np.clip(_clean_crop(gray=True) + rng.normal(0, 3 / 255, (1, 48, 48, 1)), 0, 1))
    np.save(tmp_path / "k.npy", np.ones((3, 3)) / 9)
    log = tmp_path / "log.jsonl"
    rc = restore_cli.main([str(a), "-o", str(tmp_path / "o.png"), "--task", "deblur", "--kernel",
                           str(tmp_path / "k.npy"), "--iters", "2", "--log", str(log),
                           "--effective-noise", "off", "--no-progress"])
    out = capsys.readouterr().out
    rec = json.loads(log.read_text())
    assert rc == 0 and len(seen) == 2 and seen[1] == pytest.approx(2 * seen[0], rel=1e-5)
    assert rec["diverged_at"] == [pytest.approx(seen[0], abs=1e-3)] and "diverged at" in out
    seen.clear()
    rc, err = _run([a, b, "-o", tmp_path / "given", "--task", "deblur", "--kernel",
                    tmp_path / "k.npy", "--iters", "2", "--noise", "3"], capsys)
    assert rc == 1 and seen == pytest.approx([3.0, 3.0], rel=1e-5)
    assert "failed on" in err and "a.png" in err and "higher --noise" in err
    assert _files(tmp_path / "given") == ["b.png"]


def _blurred_lamp():
    """(y, k): a 40x40 gray picture of a bright blob (1.5 over 0.3) blurred by a 5x5 box and
    clipped at 1."""
    from scipy import ndimage
    yy, xx = np.mgrid[:40, :40]
    x = 0.3 + 1.2 * np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / 30.0)
    k = np.ones((5, 5), np.float32) / 25
    return np.clip(ndimage.convolve(x, k, mode="reflect"), 0, 1), k


def test_saturation_is_on_for_deblurring_and_refused_elsewhere(tmp_path):
    """A blurred picture with a clipped highlight: deblurring treats the clipped pixels as
    unobserved by default (the solver's saturation='auto') and differs from --saturation off;
    --saturation with another task is a usage error naming the fix."""
    from dynpnp_jax.restore_cli import RestoreError, restore_photo

    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    y, k = _blurred_lamp()
    y = y.astype(np.float32)[None, ..., None]
    assert (y >= 1).mean() > 0.01
    on, rep = restore_photo(y, "deblur", kernel=k, noise=2, iters=2)
    off, rep_off = restore_photo(y, "deblur", kernel=k, noise=2, iters=2, saturation="off")
    assert float(np.abs(np.asarray(on) - np.asarray(off)).max()) > 1e-3
    # the report says how much was taken as lower bounds (values within 1/255 of the ceiling)
    assert rep["clipped"] == pytest.approx(float((y >= 1 - 1 / 255).mean()))
    assert "clipped" not in rep_off
    with pytest.raises(RestoreError, match="--task deblur only"):
        restore_photo(y, "denoise", noise=2, saturation="auto")


def test_clipped_fraction_printed_and_logged(tmp_path, capsys):
    """The command's line for a picture with values at 255 says how much was taken as lower
    bounds, and the log records the fraction; with --saturation off neither does."""
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    y, k = _blurred_lamp()
    src = tmp_path / "lamp.png"
    imageio.write_image(src, y)
    Image.fromarray(np.full((5, 5), 255, np.uint8)).save(tmp_path / "lamp_kernel.png")
    frac = float((np.round(y * 255) >= 254).mean())  # the file's values within 1/255 of 255
    for sat, expect in (("auto", frac), ("off", None)):
        log = tmp_path / f"log_{sat}.jsonl"
        rc = restore_cli.main([str(src), "-o", str(tmp_path / f"out_{sat}.png"), "--task",
                               "deblur", "--kernel", "{stem}_kernel.png", "--noise", "2",
                               "--iters", "2", "--saturation", sat, "--log", str(log),
                               "--no-progress"])
        out = capsys.readouterr().out
        rec = json.loads(log.read_text())
        assert rc == 0
        if expect is None:
            assert rec["clipped"] is None and "values clipped" not in out
        else:
            assert rec["clipped"] == pytest.approx(expect) and expect > 0.01
            assert f"{100 * expect:.2f} % of values clipped (taken as lower bounds)" in out


# ---------------------------------------------------------------------------- demosaic
def _mosaic_file(path, clean, pattern="RGGB", bits=8):
    """``clean`` (1, H, W, 3) as the raw one-channel Bayer mosaic of ``pattern`` at ``path``;
    returns the truth as the file's quantisation sees it (the samples are what was written)."""
    from dynpnp_jax import demosaic

    cfa = np.asarray(demosaic.to_cfa(demosaic.mosaic(np.asarray(clean[0], np.float32), pattern)))
    imageio.write_image(path, cfa[None, ..., None], bits=bits)
    return imageio.read_image(path)[0]


def test_demosaic_beats_mhc_8bit(tmp_path, capsys, ffdnet):
    """A 48x48 RGGB mosaic (8-bit, one channel) -> an 8-bit RGB picture of the same size, the
    observed samples kept (noise 0), closer to the truth than Malvar-He-Cutler (measured: 38.0
    dB vs 35.4, the default 40 iterations)."""
    from dynpnp_jax import demosaic

    clean = _clean_crop()
    src = tmp_path / "raw.png"
    cfa = _mosaic_file(src, clean)
    dst = tmp_path / "rgb.png"
    rc, err = _run([src, "-o", dst, "--task", "demosaic", "--noise", "0"], capsys)
    assert rc == 0, err
    x, info = imageio.read_image(dst)
    assert (info.height, info.width, info.channels, info.bits) == (48, 48, 3, 8)
    m = demosaic.bayer_mask(48, 48) > 0.5
    np.testing.assert_allclose(x[0][m], np.broadcast_to(cfa[0], (48, 48, 3))[m], atol=1e-6)
    mhc = np.clip(np.asarray(demosaic.malvar(cfa[0, ..., 0])), 0, 1)
    b = 4  # the interpolations' reflected edges left out
    got, ref = _psnr(x[0, b:-b, b:-b], clean[0, b:-b, b:-b]), _psnr(mhc[b:-b, b:-b],
                                                                    clean[0, b:-b, b:-b])
    assert got > ref + 1.0, (got, ref)


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_demosaic_patterns_odd_size_16bit(tmp_path, capsys, pattern, ffdnet):
    """Each Bayer pattern round-trips on an odd-sized (47x45) 16-bit mosaic: 16-bit RGB out, the
    same size (odd sides: the mask and the interpolation take any size), each observed sample
    where the pattern puts it, closer to the truth than bilinear (4 iterations)."""
    from dynpnp_jax import demosaic

    clean = _clean_crop()[:, :47, :45]
    src = tmp_path / f"raw_{pattern}.png"
    cfa = _mosaic_file(src, clean, pattern, bits=16)
    dst = tmp_path / "rgb.png"
    rc, err = _run([src, "-o", dst, "--task", "demosaic", "--pattern", pattern.lower(),
                    "--noise", "0", "--iters", "4"], capsys)
    assert rc == 0, err
    x, info = imageio.read_image(dst)
    assert (info.height, info.width, info.channels, info.bits) == (47, 45, 3, 16)
    m = demosaic.bayer_mask(47, 45, pattern) > 0.5
    np.testing.assert_allclose(x[0][m], np.broadcast_to(cfa[0], (47, 45, 3))[m], atol=1e-6)
    bil = np.clip(np.asarray(demosaic.bilinear(cfa[0, ..., 0], pattern)), 0, 1)
    assert _psnr(x[0], clean[0]) > _psnr(bil, clean[0]), (_psnr(x[0], clean[0]),
                                                          _psnr(bil, clean[0]))


def test_demosaic_bad_input(tmp_path, small, capsys):
    """A colour picture, options of other tasks and --pattern elsewhere: exit 2, the fix named,
    nothing written."""
    col, gray = small
    out = tmp_path / "out"
    _bad(capsys, [col, "-o", out, "--task", "demosaic"], "one-channel", "already demosaiced",
         "Fix", out=out)
    rgb_gray = tmp_path / "rgbgray.png"
    imageio.write_image(rgb_gray, np.repeat(np.random.RandomState(0).rand(16, 16, 1), 3, -1))
    _bad(capsys, [rgb_gray, "-o", out, "--task", "demosaic"], "channels are equal", out=out)
    for extra, needle in ((["--kernel", "gauss:1.6"], "--kernel"), (["--scale", "2"], "--scale"),
                          (["--mask", "zeros"], "--mask"), (["--saturation", "auto"],
                                                            "--saturation"),
                          (["--prior", "ffdnet-gray"], "--prior ffdnet-color")):
        _bad(capsys, [gray, "-o", out, "--task", "demosaic"] + extra, needle, out=out)
    _bad(capsys, [gray, "-o", out, "--task", "denoise", "--pattern", "RGGB"], "--pattern",
         "demosaic only", out=out)
    tiny = tmp_path / "tiny.png"
    imageio.write_image(tiny, np.zeros((2, 9, 1)))
    _bad(capsys, [tiny, "-o", out, "--task", "demosaic"], "2x9", out=out)
    with pytest.raises(restore_cli.RestoreError, match="already demosaiced"):
        restore_cli.restore_photo(np.zeros((1, 8, 8, 3), np.float32), "demosaic", noise=0)


def test_demosaic_noise_auto_and_interpolation_only(tmp_path, capsys, ffdnet):
    """--noise auto on a mosaic is the mean of the four Bayer sub-images' estimates (a smooth
    96x96 colour picture with noise 10/255: read as 9.6), logged; --demosaic-only mhc|bilinear
    writes that interpolation alone (no prior), and is refused with another task."""
    from dynpnp_jax import demosaic

    yy, xx = np.mgrid[:96, :96] / 96.0
    clean = np.stack([0.5 + 0.3 * np.sin(3 * xx), 0.4 + 0.3 * yy, 0.6 - 0.2 * xx * yy], -1)
    noisy = clean + np.random.RandomState(0).normal(0, 10 / 255, clean.shape)
    src = tmp_path / "raw.png"
    cfa = _mosaic_file(src, np.clip(noisy, 0, 1)[None])
    want = np.mean([restore_cli.estimate_noise(cfa[:, i::2, j::2]) for i in (0, 1)
                    for j in (0, 1)])
    assert restore_cli.estimate_mosaic_noise(cfa) == pytest.approx(want)
    assert 9.0 < want < 11.0, want
    log = tmp_path / "log.jsonl"
    rc, err = _run([src, "-o", tmp_path / "auto.png", "--task", "demosaic", "--iters", "2",
                    "--log", log], capsys)
    assert rc == 0, err
    rec = json.loads(log.read_text())
    assert rec["noise_source"] == "auto" and rec["noise"] == pytest.approx(want, abs=1e-3)
    for name, fn in (("mhc", demosaic.malvar), ("bilinear", demosaic.bilinear)):
        dst = tmp_path / f"{name}.png"
        rc, err = _run([src, "-o", dst, "--task", "demosaic", "--demosaic-only", name], capsys)
        assert rc == 0, err
        ref = np.round(np.clip(np.asarray(fn(cfa[0, ..., 0])), 0, 1) * 255) / 255
        np.testing.assert_allclose(imageio.read_image(dst)[0][0], ref, atol=1e-6)
    _bad(capsys, [src, "-o", tmp_path / "x.png", "--task", "denoise", "--demosaic-only", "mhc"],
         "--demosaic-only", "demosaic only")
