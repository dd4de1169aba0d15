"""The CLIs never lose files, never score a diverged image, and refuse implausible arguments
with one clear line (argument, what was expected, the fix) before anything runs."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from dynpnp_jax import eval as ev
from dynpnp_jax import paths

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def crops(cache, tmp_path_factory):
    """One 40x48 gray Set12 crop."""
    src = require_shared("data", "set12")
    require_shared("upstream", "dncnn", "sigma=25.mat")
    folder = tmp_path_factory.mktemp("pngs")
    Image.fromarray(np.asarray(Image.open(src / "01.png"))[64:104, 32:80]).save(folder / "a.png")
    return folder


def _fails(argv, capsys, code=2):
    with pytest.raises(SystemExit) as info:
        ev.main(argv)
    status = info.value.code
    msg = capsys.readouterr().err
    if isinstance(status, str):
        msg, status = msg + status, 1
    assert status == code, msg
    return msg


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------ losing files
def test_out_is_or_contains_or_lies_in_an_input_is_refused(crops, tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes((crops / "a.png").read_bytes())
    before = _tree(data)
    base = ["--dataset", "folder", "--data-dir", str(data), "--sigma", "25", "--method", "prior",
            "--no-compile-cache", "--overwrite"]
    cases = [(data, "is --data-dir"), (tmp_path, "contains --data-dir"),
             (data / "results", "lies inside --data-dir"),
             (ROOT, "is the repository"), (ROOT.parent, ": contains "),
             (Path.home(), "is your home directory")]
    for out, expected in cases:
        msg = _fails([*base, "--out", str(out)], capsys)
        assert expected in msg and "Fix: pass e.g. --out results/run1" in msg, msg
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    msg = _fails([*base, "--out", "."], capsys)  # --out . --overwrite: before computing
    assert "--out .: is the current directory" in msg, msg
    assert _tree(data) == before  # nothing deleted, nothing added
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not list((tmp_path / "work").iterdir())


def test_out_beside_the_inputs_is_fine(crops, tmp_path):
    from dynpnp_jax import experiment

    args = ev.build_parser().parse_args(["--dataset", "folder", "--data-dir", str(crops),
                                         "--sigma", "25", "--out", str(tmp_path / "r" / "o")])
    assert experiment.resolve(args).out == tmp_path / "r" / "o"
    with pytest.raises(ValueError, match="--out .*contains the weights/data cache"):
        paths.check_output_place(paths.cache_dir().parent, "--out")


def _staging_run(target, overwrite=False, during=None):
    """A run that writes one file; ``during(target)`` happens while it runs."""
    stage = ev._Staging(target, overwrite)
    with stage as tmp:
        (tmp / "results.json").write_text("new")
        if during:
            during(target)
        stage.commit()
    return stage


@pytest.mark.parametrize("during, why", [
    (lambda t: (t.mkdir(), (t / "results.json").write_text("first run")), "appeared"),
    (lambda t: t.mkdir(), "appeared"),                          # even an empty folder
    (lambda t: t.write_text("a user's file"), "appeared"),
    (lambda t: (t / "notes.txt").write_text("mine"), "changed")])  # into the empty --out
def test_final_move_never_replaces_what_appeared(tmp_path, during, why):
    target = tmp_path / "out"
    if why == "changed":
        target.mkdir()
    with pytest.raises(ev.RunError, match=f"--out {target}: {why} during the run; it was left "
                                          f"as it is .*results of this run are in .*out-1/"):
        _staging_run(target, during=lambda t: during(t))
    if target.is_dir():  # the other one's, untouched (the empty folder still empty)
        assert b"new" not in _tree(target).values()
    else:
        assert target.read_text() == "a user's file"
    assert (tmp_path / "out-1" / "results.json").read_text() == "new"  # ours kept beside
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no hidden leftovers


def test_overwrite_deletes_the_old_contents_and_says_so(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    stage = _staging_run(target, overwrite=True)
    assert _tree(target) == {"results.json": b"new"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert any("earlier contents" in n and "deleted" in n for n in stage.notes)
    # an --overwrite target that changed during the run is not replaced either
    with pytest.raises(ev.RunError, match="changed during the run"):
        _staging_run(target, overwrite=True,
                     during=lambda t: (t / "late.txt").write_text("put there meanwhile"))
    assert (target / "late.txt").exists() and (tmp_path / "out-1" / "results.json").exists()


def test_second_run_to_one_out_keeps_both_through_the_cli(crops, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    real_run = ev.run

    def run_and_race(exp, tmp, cluster):  # another run finishes first, into the same --out
        result = real_run(exp, tmp, cluster)
        out.mkdir()
        (out / "results.json").write_text("the other run's")
        return result

    monkeypatch.setattr(ev, "run", run_and_race)
    msg = _fails(["--dataset", "folder", "--data-dir", str(crops), "--sigma", "25", "--method",
                  "prior", "--out", str(out), "--no-compile-cache"], capsys, code=1)
    assert "appeared during the run" in msg and str(tmp_path / "out-1") in msg, msg
    assert (out / "results.json").read_text() == "the other run's"
    res = json.loads((tmp_path / "out-1" / "results.json").read_text())
    assert res["methods"]["prior"]["25"]["psnr"] > 20


# ------------------------------------------------------------------------------ diverged images
def _flaky_network():
    """A residual 'network' whose prior is the identity on dark images and NaN on bright ones:
    a diverging image beside a converging one in one batch."""
    import flax.linen as nn
    import jax.numpy as jnp

    from dynpnp_jax.networks import Network

    class Flaky(nn.Module):
        @nn.compact
        def __call__(self, x):
            bright = jnp.mean(x, axis=(1, 2, 3), keepdims=True) > 0.5
            return jnp.where(bright, jnp.nan, 0.0) * x

    return Network(module=Flaky(), variables={"params": {}}, kind="residual", channels=1,
                   name="flaky")


def test_a_network_output_of_nan_fails_that_image_only(crops, tmp_path, capsys, monkeypatch):
    import dynpnp_jax

    folder = tmp_path / "two"
    folder.mkdir()
    img = np.asarray(Image.open(crops / "a.png"))
    Image.fromarray((img // 4).astype(np.uint8)).save(folder / "dark.png")
    Image.fromarray((255 - img // 4).astype(np.uint8)).save(folder / "bright.png")
    monkeypatch.setattr(dynpnp_jax, "load_network", lambda name, path=None: _flaky_network())
    out = tmp_path / "out"
    msg = _fails(["--dataset", "folder", "--data-dir", str(folder), "--sigma", "25", "--method",
                  "prior", "gradient", "--iters", "2", "--out", str(out), "--no-compile-cache"],
                 capsys, code=1)
    assert "error: method 'gradient', sigma=25, image 'bright' not scored" in msg, msg
    assert "2 restored image(s) were not finite and were not scored" in msg
    res = json.loads((out / "results.json").read_text())
    assert sorted((f["method"], f["image"]) for f in res["failures"]) == [
        ("gradient", "bright"), ("prior", "bright")]
    for method in ("prior", "gradient"):
        r = res["methods"][method]["25"]
        assert r["n_failed"] == 1 and r["n_scored"] == 1
        assert r["psnr"] is None  # no mean over a subset of the images is reported
        assert r["per_image"]["bright"]["status"] == "non-finite"
        assert r["per_image"]["bright"]["psnr"] is None
        assert r["per_image"]["dark"]["status"] == "ok" and r["per_image"]["dark"]["psnr"] > 15


# ------------------------------------------------------------------------------ what is compared
@pytest.mark.slow  # converts the colour DnCNN (~10 s); the report's part is checked fast below
def test_color_prior_on_gray_set_prints_the_conversion_and_hides_published_rows(
        cache, tmp_path, capsys):
    require_shared("data", "set12")
    require_shared("upstream", "dncnn", "GD_Color_Blind.mat")
    out = tmp_path / "out"
    ev.main(["--dataset", "set12", "--sigma", "25", "--method", "prior", "--prior",
             "dncnn-b-color", "--limit", "1", "--out", str(out), "--no-compile-cache"])
    printed = capsys.readouterr().out
    assert "images converted for the prior: image 1->3 channel(s) (1 image(s), the gray " \
           "channel repeated)" in printed
    assert "DnCNN (published)" not in printed and "(published)" not in printed
    assert "not the published protocol; the published rows are not shown" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["published_shown"] is False and res["published"] == {}
    assert res["data"]["conversions"] == {"image 1->3 channel(s)": 1}
    assert "converted for the prior" in (out / "results.md").read_text()


def test_weights_files_are_recorded_and_other_weights_hide_published_rows(crops, tmp_path):
    import hashlib

    from dynpnp_jax import experiment, report
    from dynpnp_jax.download import sha256_file

    release = require_shared("upstream", "dncnn", "sigma=25.mat")
    require_shared("data", "set12")
    args = ev.build_parser().parse_args([
        "--dataset", "set12", "--sigma", "25", "--method", "prior", "--weights", str(release),
        "--out", str(tmp_path / "o")])
    exp = experiment.resolve(args)
    files = ev._weights_files(exp)
    assert files == {str(release): {"sha256": sha256_file(release), "network": "dncnn-s25",
                                    "release_sha256": sha256_file(release)}}
    shown = report.new_results(exp, n_images=1, conversions={}, weights_files=files)
    assert shown["published_shown"] and shown["weights_files"] == files
    other = {str(release): {**files[str(release)], "sha256": hashlib.sha256(b"x").hexdigest()}}
    hidden = report.new_results(exp, n_images=1, conversions={}, weights_files=other)
    assert not hidden["published_shown"] and "--weights is not the released file" in \
        hidden["published_hidden_reason"]
    # gray images given to a colour prior: the table says so, with no published gray rows
    conv = report.new_results(exp, n_images=1, conversions={"image 1->3 channel(s)": 1})
    assert shown["published"] and conv["published"] == {} and not conv["published_shown"]
    table = report.markdown_table(conv)
    assert "(published)" not in table and "the published rows are not shown" in table
    assert "images converted for the prior: image 1->3 channel(s) (1 image(s), the gray " \
           "channel repeated); not the protocol's own images" in table


# ------------------------------------------------------------------------------ hangs
def test_iters_is_bounded_with_the_reason(crops, tmp_path, capsys):
    from dynpnp_jax import experiment, solver

    assert experiment.MAX_ITERS == getattr(solver, "ITERS_MAX", experiment.MAX_ITERS)
    msg = _fails(["--dataset", "folder", "--data-dir", str(crops), "--iters", "1000000",
                  "--out", str(tmp_path / "o")], capsys)
    assert "argument --iters: expected at most 1000: each iteration calls the network once " \
           "per image" in msg and "Fix: e.g. --iters 8" in msg


def test_ctrl_c_twice_ends_a_long_compiled_call_at_once(cache, tmp_path):
    """A restore call is one compiled loop that Python's Ctrl-C waits for; the CLI says so at
    the first Ctrl-C and quits at once at the second, deleting its staging folder."""
    import signal
    import subprocess
    import sys
    import time

    src = require_shared("data", "set12")
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "01.png").write_bytes((src / "01.png").read_bytes())  # 256x256: ~1 min for T=1000
    out = tmp_path / "out"
    env = {**os.environ, "DYNPNP_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "dynpnp_jax.eval", "--dataset", "folder",
                          "--data-dir", str(folder), "--sigma", "25", "--method", "gradient",
                          "--iters", "1000", "--out", str(out), "--no-compile-cache"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.set_blocking(p.stderr.fileno(), False)
    err, t0 = b"", time.monotonic()
    try:
        while b"gradient sigma=25" not in err and time.monotonic() - t0 < 200:
            err += p.stderr.read() or b""
            time.sleep(0.2)
        assert p.poll() is None, err.decode(errors="replace")[-2000:]
        time.sleep(5)  # inside the compiled loop (T=1000 on 256x256 runs about a minute)
        p.send_signal(signal.SIGINT)
        time.sleep(1)
        in_call = p.poll() is None  # Python's handler waits for the compiled call to return
        if in_call:
            t1 = time.monotonic()
            p.send_signal(signal.SIGINT)
            p.wait(timeout=30)
            assert time.monotonic() - t1 < 5
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    os.set_blocking(p.stderr.fileno(), True)
    err = (err + p.stderr.read()).decode(errors="replace")
    assert p.returncode == 130, err[-2000:]
    assert "interrupted (Ctrl-C): stopping as soon as the running compiled call returns" in err
    if in_call:  # the usual case
        assert "interrupted again: quit at once; nothing written" in err
    else:  # still compiling (a loaded machine): Python code, stopped by the first Ctrl-C
        assert "interrupted (Ctrl-C): stopped; nothing written" in err
    assert not out.exists() and not [q for q in tmp_path.iterdir() if q.name.startswith(".")]


# ------------------------------------------------------------------------------ clear errors
@pytest.fixture
def configs(tmp_path):
    raising = tmp_path / "raising.py"
    raising.write_text("def get_config():\n    return {'prior': 1 / 0}\n")
    long_run = tmp_path / "long.py"
    long_run.write_text("def get_config():\n    return {'prior': 'dncnn-s{sigma}', 'methods': "
                        "{'g': {'mode': 'gradient', 'iters': 20000}}}\n")
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "garbage.npy").write_bytes(b"garbage" * 10)
    return tmp_path


CLEAR = [  # (arguments, what the one message must say)
    (["--noise", "nan"], r"--noise nan: expected a finite noise level >= 0 on the 8-bit scale"),
    (["--noise", "inf", "2.55"], r"--noise inf: expected a finite noise level"),
    (["--config", "{d}/raising.py"], r"--config .*raising.py: get_config\(\) raised "
                                     r"ZeroDivisionError: division by zero \(line 2\)\. Expected "
                                     r"it to return the experiment dict\. Fix: correct"),
    (["--config", "{d}/long.py"], r"method 'g': iters=20000; expected at most 1000"),
    (["--task", "deblur", "--kernel", "motion:1e6,45"], r"--kernel motion:1e6,45: .*length"),
    (["--task", "deblur", "--kernel", "{d}/obj.npy"], r"--kernel .*obj.npy: .*not a numeric "
                                                      r"kernel"),
    (["--task", "deblur", "--kernel-given", "{d}/garbage.npy"], r"--kernel-given .*garbage.npy"
                                                                r": .*not a numeric kernel"),
    (["--num-processes", "100000000", "--process-id", "0", "--coordinator", "127.0.0.1:1"],
     r"--num-processes 100000000: expected at most 4096 processes"),
]


@pytest.mark.parametrize("extra,expected", CLEAR, ids=[" ".join(a) for a, _ in CLEAR])
def test_bad_values_are_one_clear_usage_error(extra, expected, crops, configs, capsys):
    import re

    extra = [a.format(d=configs) for a in extra]
    out = configs / "out"
    msg = _fails(["--dataset", "folder", "--data-dir", str(crops), "--out", str(out), *extra],
                 capsys)
    assert re.search(expected, msg), msg
    assert "Traceback" not in msg and msg.count("error:") == 1
    assert not out.exists()


def test_a_diverging_authors_config_is_a_failure_not_a_score(crops, tmp_path, capsys):
    """authors mode with alpha = 1 (the A-step's rate): the operator deviation runs off to inf
    and the image to zero; restore raises and the CLI records the image as failed."""
    config = tmp_path / "alpha1.py"
    config.write_text(
        "def get_config():\n"
        "    return {'dataset': 'folder', 'prior': 'dncnn-s{sigma}', 'methods': {\n"
        "        'authors': {'mode': 'authors', 'iters': 2, 'mu': 0.1, 'delta': 0.01,\n"
        "                    'alpha': 1.0}}}\n")
    out = tmp_path / "out"
    msg = _fails(["--config", str(config), "--data-dir", str(crops), "--sigma", "25", "--out",
                  str(out), "--no-compile-cache"], capsys, code=1)
    assert "error: method 'authors', sigma=25, image 'a' not scored" in msg, msg
    res = json.loads((out / "results.json").read_text())
    assert [(f["method"], f["image"]) for f in res["failures"]] == [("authors", "a")]
    assert res["methods"]["authors"]["25"]["psnr"] is None
    assert res["methods"]["authors"]["25"]["per_image"]["a"]["status"] == "non-finite"
    assert "restored image(s) were not finite and were not scored" in msg
