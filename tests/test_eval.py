"""The evaluation CLI end to end on small crops: reports, protocols, failures, output folder."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from dynpnp_jax import eval as ev

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def crops(cache, tmp_path_factory):
    """Two Set12 crops, one landscape (64x96) and one portrait (96x64)."""
    src = require_shared("data", "set12")
    require_shared("upstream", "dncnn", "sigma=25.mat")
    folder = tmp_path_factory.mktemp("pngs")
    Image.fromarray(np.asarray(Image.open(src / "01.png"))[64:128, 32:128]).save(
        folder / "img01.png")
    Image.fromarray(np.asarray(Image.open(src / "05.png"))[32:128, 64:128]).save(
        folder / "img05.png")
    return folder


def _fails(argv, capsys, code=2):
    """Runs the CLI expecting a failure; returns stderr (+ the exit message)."""
    with pytest.raises(SystemExit) as info:
        ev.main(argv)
    status = info.value.code
    msg = capsys.readouterr().err
    if isinstance(status, str):  # SystemExit("error: ...") exits with status 1
        msg, status = msg + status, 1
    assert status == code, msg
    return msg


def _nothing_left(parent: Path, name: str):
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_cli_folder_end_to_end(crops, tmp_path):
    import jax

    import dynpnp_jax as dp
    from dynpnp_jax import data

    out = tmp_path / "out"
    ev.main(["--dataset", "folder", "--data-dir", str(crops), "--sigma", "25", "--method",
             "prior", "authors", "gradient", "--out", str(out), "--save-images",
             "--no-compile-cache"])
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"] == "standard" and res["dataset"] == "folder" and res["task"] == "denoise"
    assert list(res["methods"]) == ["prior", "authors", "gradient"]
    for method, per in res["methods"].items():
        r = per["25"]
        assert r["n_images"] == r["n_scored"] == 2 and set(r["per_image"]) == {"img01", "img05"}
        assert 20.0 < r["psnr"] < 40.0 and 0.3 < r["ssim"] <= 1.0
        np.testing.assert_allclose(r["psnr"], np.mean([v["psnr"] for v in r["per_image"].values()]))
        iters = 1 if method == "prior" else res["config"][method]["25"]["iters"]
        assert len(r["psnr_per_iter_mean"]) == iters
    assert res["methods"]["prior"]["25"]["psnr"] > 26.0  # far above the noisy input
    # the recorded settings reproduce the recorded numbers, batched as the CLI batches them:
    # gradient one shape at a time, authors with the portrait crop rotated beside the other
    proto, net = data.get_protocol("standard"), dp.load_network("dncnn-s25")
    probs = [proto.problem(ex, 25) for ex in data.load_dataset("folder", data_dir=crops)]
    assert [p.name for p in probs] == ["img01", "img05"] and probs[1].y.shape == (96, 64, 1)
    recorded = {m: res["methods"][m]["25"]["per_image"] for m in ("gradient", "authors")}
    cfg = dp.make_config(**res["config"]["gradient"]["25"])
    for prob in probs:
        restored, _ = dp.restore({"prior": net}, prob.y[None], cfg)
        assert proto.evaluate(np.asarray(restored)[0], prob.meta)["psnr"] == pytest.approx(
            recorded["gradient"][prob.name]["psnr"], abs=1e-4)
    cfg = dp.make_config(**res["config"]["authors"]["25"])
    y = np.stack([probs[0].y, np.rot90(probs[1].y)])
    restored = np.asarray(dp.restore({"prior": net}, y, cfg)[0])
    for prob, one in zip(probs, (restored[0], np.rot90(restored[1], -1))):
        assert proto.evaluate(one, prob.meta)["psnr"] == pytest.approx(
            recorded["authors"][prob.name]["psnr"], abs=1e-4)
    assert res["versions"]["jax"] == jax.__version__
    assert res["data"]["published_set"] is False and res["published_shown"] is False
    assert "BT.601" in res["data"]["gray_rule"] and res["compile_cache"] is None
    for name in ("results.csv", "results.md", "convergence.png", "examples.png"):
        assert (out / name).stat().st_size > 0
    assert "no published rows" in (out / "results.md").read_text()
    assert len(list((out / "images" / "authors").glob("*.png"))) == 2
    rows = _rows(out / "results.csv")
    assert len(rows) == 3 * 2 and {r["status"] for r in rows} == {"ok"}
    assert list(rows[0]) == ["method", "sigma", "image", "psnr", "ssim", "status"]


@pytest.mark.slow  # two more networks and compilations; resolve() is checked fast below
def test_cli_authors_protocol_subset_and_iters(crops, tmp_path):
    out = tmp_path / "out2"
    ev.main(["--dataset", "folder", "--data-dir", str(crops), "--sigma", "15", "50",
             "--method", "prior", "gradient", "--protocol", "authors", "--iters", "3",
             "--limit", "1", "--out", str(out), "--no-compile-cache"])
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"] == "authors" and list(res["methods"]) == ["prior", "gradient"]
    assert res["conditions"] == ["15", "50"] and res["sigmas"] == [15, 50]
    assert res["methods"]["prior"]["15"]["psnr"] > res["methods"]["prior"]["50"]["psnr"]
    assert len(res["methods"]["gradient"]["50"]["psnr_per_iter_mean"]) == 3
    kw = res["config"]["gradient"]["15"]
    assert kw["iters"] == 3 and len(kw["delta"]) == 3 and kw["delta"][2] == kw["delta"][1]
    assert res["networks"] == {"15": {"prior": "dncnn-s15", "noise": None},
                               "50": {"prior": "dncnn-s50", "noise": None}}


def test_resolve_protocol_conditions_methods_iters(crops, tmp_path):
    from dynpnp_jax import experiment

    args = ev.build_parser().parse_args([
        "--dataset", "folder", "--data-dir", str(crops), "--sigma", "15", "50", "30",
        "--method", "prior", "gradient", "authors", "--protocol", "authors", "--iters", "3",
        "--prior", "dncnn-b-gray", "--out", str(tmp_path / "o")])
    exp = experiment.resolve(args)
    assert exp.protocol.name == "authors" and exp.conditions == [15, 50, 30]
    assert list(exp.methods) == ["prior", "gradient", "authors"]
    grad = exp.methods["gradient"]
    assert grad["15"]["iters"] == 3 and len(grad["15"]["delta"]) == 3
    assert grad["15"]["delta"][2] == grad["15"]["delta"][1]  # extended with the last value
    assert exp.methods["prior"]["15"] == {"mode": "prior"}  # --iters leaves the network alone
    assert exp.methods["authors"]["50"]["iters"] == 3
    assert any("no setting for 30; using the one of 25" in n for n in exp.notes)
    assert exp.networks == {k: ("dncnn-b-gray", None) for k in ("15", "50", "30")}
    assert not (tmp_path / "o").exists()  # resolving writes nothing


def test_custom_set12_has_no_published_rows_and_repeats_run_once(crops, tmp_path):
    custom = tmp_path / "set12"
    custom.mkdir()
    (custom / "01.png").write_bytes((crops / "img01.png").read_bytes())
    out = tmp_path / "out3"
    out.mkdir()
    (out / "old.txt").write_text("from an earlier run")
    argv = ["--dataset", "set12", "--data-dir", str(custom), "--sigma", "25", "25",
            "--method", "prior", "prior", "--out", str(out), "--no-compile-cache"]
    with pytest.raises(SystemExit) as info:  # a non-empty --out is refused ...
        ev.main(argv)
    assert info.value.code == 2 and (out / "old.txt").exists()
    ev.main(argv + ["--overwrite"])  # ... unless --overwrite
    assert not (out / "old.txt").exists()
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["published_set"] is False and res["published"] == {}
    assert res["conditions"] == ["25"] and list(res["methods"]) == ["prior"]
    assert len(_rows(out / "results.csv")) == 1
    assert any("--sigma: sigma 25 was given more than once" in n for n in res["notes"])
    assert any("--method" in n for n in res["notes"])
    md = (out / "results.md").read_text()
    assert "DnCNN (published)" not in md and "custom data: 1 file(s)" in md


def test_non_finite_output_fails_the_image_and_the_run(crops, tmp_path, capsys):
    config = tmp_path / "diverge.py"
    config.write_text(
        "def get_config():\n"
        "    return {'dataset': 'folder', 'prior': 'dncnn-s{sigma}', 'methods': {\n"
        "        'prior': {'mode': 'prior'},\n"
        "        'blowup': {'mode': 'gradient', 'iters': 3, 'delta': 0.3, 'mu': 0.3,\n"
        "                   'alpha': 1e30}}}\n")
    out = tmp_path / "out"
    msg = _fails(["--config", str(config), "--data-dir", str(crops), "--out", str(out),
                  "--no-compile-cache"], capsys, code=1)
    assert "2 restored image(s) were not finite" in msg and "method 'blowup'" in msg
    assert "image 'img01'" in msg
    res = json.loads((out / "results.json").read_text())  # the report says what happened
    blowup = res["methods"]["blowup"]["25"]
    assert blowup["psnr"] is None and blowup["n_failed"] == 2 and blowup["n_scored"] == 0
    assert res["methods"]["prior"]["25"]["psnr"] > 26  # the other method is still scored
    assert {f["image"] for f in res["failures"]} == {"img01", "img05"}
    statuses = {(r["method"], r["status"]) for r in _rows(out / "results.csv")}
    assert statuses == {("prior", "ok"), ("blowup", "non-finite")}
    assert all(r["psnr"] == "" for r in _rows(out / "results.csv") if r["method"] == "blowup")
    assert "FAILED (2 of 2 non-finite)" in (out / "results.md").read_text()


@pytest.fixture
def bad_config(tmp_path):
    path = tmp_path / "nomethods.py"
    path.write_text("def get_config():\n    return {'prior': 'dncnn-s{sigma}'}\n")
    return path


BAD_ARGS = [  # (arguments, what the message must contain)
    (["--sigma", "-5"], "argument --sigma: sigma must be a finite number > 0"),
    (["--sigma", "0"], "argument --sigma: sigma must be a finite number > 0"),
    (["--sigma", "25.5"], "--sigma 25.5: --prior 'dncnn-s{sigma}' has no network for sigma 25.5"
                          "\\b.*exists for sigma 15, 25, 50"),
    (["--batch", "-2"], "argument --batch: expected a positive integer"),
    (["--batch", "0"], "argument --batch: expected a positive integer"),
    (["--limit", "0"], "argument --limit: expected a positive integer"),
    (["--iters", "0"], "argument --iters: expected a positive integer"),
    (["--tile", "-1"], "argument --tile: expected an integer >= 0"),
    (["--dataset", "imagenet"], "--dataset: unknown dataset 'imagenet'; expected one of set12"),
    (["--method", "admm"], "--method: unknown method.*'admm'.*Fix"),
    (["--protocol", "kair"], "--protocol: unknown protocol 'kair'"),
    (["--protocol", "gopro"], "--protocol gopro: takes blur/sharp pairs, but dataset 'folder'"),
    (["--prior", "nonet"], "--prior: unknown network 'nonet'"),
    (["--data-dir", "/no/such/dir"], "--data-dir /no/such/dir: no such folder"),
    (["CONFIG"], "--config .*nomethods.py: get_config\\(\\) lacks \\['methods'\\].*must contain"
                 " 'methods'"),
    (["OUT-UNDER-FILE"], "--out .*: cannot be created, .*afile is a file"),
]


@pytest.mark.parametrize("extra,expected", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_arguments_fail_before_writing(extra, expected, crops, tmp_path, bad_config, capsys):
    (tmp_path / "afile").write_text("")
    out = tmp_path / "out"
    if extra == ["CONFIG"]:
        extra = ["--config", str(bad_config)]
    if extra == ["OUT-UNDER-FILE"]:
        extra, out = [], tmp_path / "afile" / "out"
    argv = ["--dataset", "folder", "--data-dir", str(crops), "--out", str(out), *extra]
    msg = _fails(argv, capsys, code=2)
    import re

    assert re.search(expected, msg), msg
    assert "Fix" in msg or "argument" in msg  # argparse's own messages say what was expected
    _nothing_left(out.parent if out.parent.is_dir() else tmp_path, out.name)


def test_unreadable_image_is_named_and_nothing_written(crops, tmp_path, capsys):
    folder = tmp_path / "pngs"
    folder.mkdir()
    (folder / "a.png").write_bytes((crops / "img01.png").read_bytes())
    (folder / "b.png").write_bytes((crops / "img05.png").read_bytes()[:300])  # truncated
    out = tmp_path / "deep" / "out"
    msg = _fails(["--dataset", "folder", "--data-dir", str(folder), "--out", str(out),
                  "--no-compile-cache"], capsys, code=1)
    assert f"cannot read image {folder / 'b.png'}" in msg
    assert not (tmp_path / "deep").exists()  # not even the parent it would have created


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """blur/ + sharp/ crops of GoPro frame 000001; f2 (a BMP) has no sharp twin."""
    gopro = require_shared("data", "gopro")
    folder = tmp_path_factory.mktemp("pairs")
    (folder / "blur").mkdir()
    (folder / "sharp").mkdir()
    blur = np.asarray(Image.open(gopro / "blur" / "000001.png"))
    sharp = np.asarray(Image.open(gopro / "sharp" / "000001.png"))
    Image.fromarray(blur[300:364, 500:596]).save(folder / "blur" / "f1.png")
    Image.fromarray(sharp[300:364, 500:596]).save(folder / "sharp" / "f1.png")
    Image.fromarray(blur[100:164, 200:296]).save(folder / "blur" / "f2.bmp")
    return folder


def _cli(argv, cache):
    env = {**os.environ, "DYNPNP_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    env.pop("DYNPNP_NO_COMPILE_CACHE", None)
    return subprocess.run([sys.executable, "-m", "dynpnp_jax.eval", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_folder_of_pairs_is_deblurring(pairs, cache, tmp_path):
    """blur/ + sharp/ under --dataset folder picks deblurring (the gopro protocol), as a real CLI
    process: exit status 0, the compile cache written. ``input`` needs no network."""
    out = tmp_path / "out"
    proc = _cli(["--dataset", "folder", "--data-dir", str(pairs), "--method", "input",
                 "--save-images", "--out", str(out)], cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert (res["task"], res["protocol"], res["prior"]) == ("deblur", "gopro", "dmphn-1-2-4")
    assert res["config_file"].endswith("deblur_folder.py")
    r = res["methods"]["input"]["recorded"]
    assert r["n_images"] == 2 and r["n_scored"] == 1 and 20 < r["psnr"] < 40
    assert r["per_image"]["f2"]["status"] == "no reference"
    assert res["published_shown"] is False
    assert len(list((out / "images" / "input").glob("*.png"))) == 2
    assert "recorded blur" in proc.stdout and "(n=1 of 2)" in proc.stdout
    assert res["compile_cache"] == str(cache / "xla")
    assert any((cache / "xla").iterdir())  # the persistent compilation cache was written


@pytest.mark.slow  # converts DMPHN (torch) and runs it
def test_folder_of_pairs_with_dmphn(pairs, cache, tmp_path):
    require_shared("upstream", "dmphn", "DMPHN_1_2_4")
    pytest.importorskip("torch")
    out = tmp_path / "out"
    proc = _cli(["--dataset", "folder", "--data-dir", str(pairs), "--method", "input", "prior",
                 "authors", "--out", str(out)], cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    blurred = res["methods"]["input"]["recorded"]["psnr"]
    for method in ("prior", "authors"):  # DMPHN deblurs: better than the blurred input
        assert res["methods"][method]["recorded"]["psnr"] > blurred + 0.5


def test_enable_compilation_cache(tmp_path, monkeypatch):
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    saved = {n: getattr(jax.config, n) for n in names}
    before = saved["jax_compilation_cache_dir"]
    monkeypatch.setenv("DYNPNP_CACHE", str(tmp_path))
    monkeypatch.setenv("DYNPNP_NO_COMPILE_CACHE", "1")
    assert ev.enable_compilation_cache() is None and jax.config.jax_compilation_cache_dir == before
    monkeypatch.setenv("DYNPNP_NO_COMPILE_CACHE", "0")
    try:
        assert ev.enable_compilation_cache() == tmp_path / "xla"
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
    finally:
        for n, v in saved.items():
            jax.config.update(n, v)
        compilation_cache.reset_cache()


# ------------------------------------------------------------------------------ known degradations
@pytest.fixture(scope="module")
def gray_crops(cache, tmp_path_factory):
    """64x64 crops of two Set3G images (gray)."""
    src = require_shared("data", "set3g")
    folder = tmp_path_factory.mktemp("set3g_crops")
    for name in ("cameraman", "house"):
        Image.fromarray(np.asarray(Image.open(src / f"{name}.png"))[64:128, 64:128]).save(
            folder / f"{name}.png")
    return folder


def test_cli_deblur_known_kernels(gray_crops, tmp_path):
    out = tmp_path / "out"
    ev.main(["--task", "deblur", "--dataset", "folder", "--data-dir", str(gray_crops),
             "--kernel", "gauss:1.6,15", "motion:9,30", "--noise", "2.55", "7.65",
             "--method", "input", "wiener", "--out", str(out), "--no-compile-cache"])
    res = json.loads((out / "results.json").read_text())
    assert (res["protocol"], res["task"], res["condition_name"]) == ("dpir", "deblur",
                                                                      "degradation")
    assert res["conditions"] == ["gauss:1.6,15|2.55", "motion:9,30|2.55", "gauss:1.6,15|7.65",
                                 "motion:9,30|7.65"]
    assert res["condition_fields"]["motion:9,30|7.65"] == {
        "task": "deblur", "noise": 7.65, "kernel": "motion:9,30", "scale": 1}
    assert res["prior"] == "ffdnet-gray"  # {color} from the files
    for method in ("input", "wiener"):
        per = res["methods"][method]
        mean = res["group_means"][method]["noise=2.55"]
        assert mean["psnr"] == pytest.approx(np.mean([per[k]["psnr"] for k in res["conditions"][:2]]))
        assert mean["n_conditions"] == 2
    # more noise, lower PSNR; the Wiener filter beats the blurred input at low noise
    assert res["methods"]["input"]["gauss:1.6,15|7.65"]["psnr"] < res["methods"]["input"][
        "gauss:1.6,15|2.55"]["psnr"]
    assert res["group_means"]["wiener"]["noise=2.55"]["psnr"] > res["group_means"]["input"][
        "noise=2.55"]["psnr"]
    md = (out / "results.md").read_text()
    assert "noise=2.55:" in md and "mean (noise=7.65)" in md
    assert len(_rows(out / "results.csv")) == 2 * 4 * 2
    assert list(_rows(out / "results.csv")[0])[1] == "degradation"


def test_cli_sr_and_inpaint_baselines(gray_crops, tmp_path):
    out = tmp_path / "sr"
    ev.main(["--task", "sr", "--dataset", "folder", "--data-dir", str(gray_crops), "--scale",
             "2", "4", "--kernel", "gauss:1.2,15", "--method", "input", "bicubic", "--out",
             str(out), "--no-compile-cache"])
    res = json.loads((out / "results.json").read_text())
    assert res["conditions"] == ["x2|gauss:1.2,15|0", "x4|gauss:1.2,15|0"]
    x2, x4 = (res["methods"]["bicubic"][k]["psnr"] for k in res["conditions"])
    assert x2 > x4 and x2 > res["methods"]["input"]["x2|gauss:1.2,15|0"]["psnr"]
    out = tmp_path / "inpaint"
    ev.main(["--task", "inpaint", "--dataset", "folder", "--data-dir", str(gray_crops),
             "--mask", "random:0.5", "random:0.8", "--method", "input", "interp", "--out",
             str(out), "--no-compile-cache"])
    res = json.loads((out / "results.json").read_text())
    assert res["conditions"] == ["random:0.5|0", "random:0.8|0"]
    interp = res["methods"]["interp"]
    assert interp["random:0.5|0"]["psnr"] > interp["random:0.8|0"]["psnr"] > res["methods"][
        "input"]["random:0.8|0"]["psnr"]


def test_resolve_known_degradations(crops, tmp_path):
    from dynpnp_jax import experiment

    def resolve(*argv):
        args = ev.build_parser().parse_args(["--dataset", "set3g", "--out", str(tmp_path / "o"),
                                             *argv])
        return experiment.resolve(args)

    require_shared("data", "set3g")
    exp = resolve("--task", "deblur", "--kernel", "levin", "--noise", "2.55", "7.65")
    assert exp.protocol.name == "dpir" and len(exp.conditions) == 16
    assert [exp.key(c) for c in exp.conditions[:2]] == ["levin:1|2.55", "levin:2|2.55"]
    assert list(exp.methods) == ["input", "wiener", "dpir"]  # bicubic/interp: other tasks
    assert exp.methods["dpir"]["levin:8|7.65"] == {"iters": 8, "noise_level": 7.65 / 255,
                                                   "mode": "dpir", "ensemble": True}
    assert exp.networks["levin:1|2.55"] == ("ffdnet-gray", None)
    exp = resolve("--task", "sr", "--scale", "2", "3")
    assert [exp.key(c) for c in exp.conditions] == ["x2|bicubic:2|0", "x3|bicubic:3|0"]
    assert exp.methods["dpir"]["x3|bicubic:3|0"]["iters"] == 24
    exp = resolve("--task", "inpaint", "--iters", "4")
    assert [exp.key(c) for c in exp.conditions] == ["random:0.5|0"]
    assert exp.methods["dpir"]["random:0.5|0"]["iters"] == 4 and "interp" in exp.methods
    exp = resolve("--task", "deblur", "--kernel", "gauss:1.6", "--noise", "0.01")
    assert any("0.01 means 0.01/255" in n for n in exp.notes)  # a [0, 1]-scale slip is named
    exp = resolve("--noise", "dncnn-b-gray", "--prior", "dncnn-b-gray")  # the old meaning
    assert exp.networks["25"] == ("dncnn-b-gray", "dncnn-b-gray")
    assert any("--noise-net" in n for n in exp.notes)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # converts FFDNet, compiles the x8 ensemble
def test_cli_dpir_solver(gray_crops, tmp_path):
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    out = tmp_path / "out"
    ev.main(["--task", "deblur", "--dataset", "folder", "--data-dir", str(gray_crops),
             "--kernel", "gauss:1.6,15", "--noise", "2.55", "--method", "input", "dpir",
             "--save-images", "--out", str(out), "--no-compile-cache"])
    res = json.loads((out / "results.json").read_text())
    key = "gauss:1.6,15|2.55"
    assert res["config"]["dpir"][key] == {"iters": 8, "noise_level": pytest.approx(0.01),
                                          "mode": "dpir", "ensemble": True}
    dpir, inp = res["methods"]["dpir"][key], res["methods"]["input"][key]
    assert dpir["psnr"] > inp["psnr"] + 3 and len(dpir["psnr_per_iter_mean"]) == 8
    assert len(list((out / "images" / "dpir").glob("*.png"))) == 2


def test_resolve_tuned_schedule_method(tmp_path):
    """``dpir-tuned`` (configs/dpir.py) takes configs/dpir_tuned.py's schedule for the
    condition's noise level and T (--iters); it runs only when named, only for deblurring, and
    a (noise, T) without a tuned schedule is refused with the fix."""
    require_shared("data", "set3g")
    from configs import dpir_tuned
    from dynpnp_jax import experiment

    def resolve(*argv):
        args = ev.build_parser().parse_args(["--dataset", "set3g", "--out", str(tmp_path / "o"),
                                             "--task", "deblur", "--kernel", "levin:1", *argv])
        return experiment.resolve(args)

    assert "dpir-tuned" not in resolve("--noise", "2.55").methods  # not by default
    for noise, iters in dpir_tuned.TUNED:
        exp = resolve("--noise", str(noise), "--iters", str(iters), "--method", "dpir",
                      "dpir-tuned")
        key = f"levin:1|{noise:g}"
        kw = exp.methods["dpir-tuned"][key]
        assert kw == {**dpir_tuned.get_config(noise, iters, ensemble=True),
                      "noise_level": pytest.approx(noise / 255)}
        assert {k: v for k, v in kw.items() if k not in ("sigma", "mu")} == exp.methods["dpir"][key]
    from configs import dpir_tuned_relax  # the larger family: relax / inertia reach the solver
    exp = resolve("--noise", "2.55", "--iters", "4", "--method", "dpir", "dpir-tuned-relax")
    kw = exp.methods["dpir-tuned-relax"]["levin:1|2.55"]
    assert kw == {**dpir_tuned_relax.get_config(2.55, 4, ensemble=True),
                  "noise_level": pytest.approx(2.55 / 255)}
    assert len(kw["relax"]) == len(kw["inertia"]) == 4
    with pytest.raises(experiment.UsageError, match=r"no schedule for noise 5, T=8.*Fix:.*tune"):
        resolve("--noise", "5", "--method", "dpir-tuned")
    with pytest.raises(experiment.UsageError, match="no schedule for noise 2.55, T=3"):
        resolve("--noise", "2.55", "--iters", "3", "--method", "dpir-tuned")
    args = ev.build_parser().parse_args(["--dataset", "set3g", "--out", str(tmp_path / "o"),
                                         "--task", "sr", "--method", "dpir-tuned"])
    with pytest.raises(experiment.UsageError, match="does not apply to task 'sr'.*deblur"):
        experiment.resolve(args)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # converts FFDNet, compiles the x8 ensemble
def test_cli_dpir_tuned_method(gray_crops, tmp_path):
    """The tuned schedule through the CLI on two crops: the config's values reach the solver."""
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    from configs import dpir_tuned

    out = tmp_path / "out"
    ev.main(["--task", "deblur", "--dataset", "folder", "--data-dir", str(gray_crops),
             "--kernel", "gauss:1.6,15", "--noise", "2.55", "--iters", "4", "--method", "input",
             "dpir-tuned", "--out", str(out), "--no-compile-cache"])
    res = json.loads((out / "results.json").read_text())
    key = "gauss:1.6,15|2.55"
    want = dpir_tuned.get_config(2.55, 4, ensemble=True)
    assert res["config"]["dpir-tuned"][key] == {**want, "noise_level": pytest.approx(0.01)}
    tuned, inp = res["methods"]["dpir-tuned"][key], res["methods"]["input"][key]
    assert len(tuned["psnr_per_iter_mean"]) == 4 and np.all(np.isfinite(tuned["psnr_per_iter_mean"]))
    assert tuned["psnr"] > inp["psnr"]  # it deblurs


def test_cli_deblur_unknown_boundary(gray_crops, tmp_path):
    """--boundary unknown: the frame of the larger blurred image, its own condition key; the
    solver told the truth (dpir, Blur(boundary='unknown')) beats the one told it is circular
    (dpir-circular, run only when named) by a wide margin."""
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    out = tmp_path / "out"
    ev.main(["--task", "deblur", "--dataset", "folder", "--data-dir", str(gray_crops),
             "--kernel", "gauss:1.6,15", "--noise", "2.55", "--boundary", "circular", "unknown",
             "--iters", "4", "--method", "input", "dpir", "dpir-circular", "--out", str(out),
             "--no-compile-cache"])
    res = json.loads((out / "results.json").read_text())
    key = "gauss:1.6,15|boundary=unknown|2.55"
    assert res["conditions"] == ["gauss:1.6,15|2.55", key]
    assert res["condition_fields"][key]["boundary"] == "unknown"
    assert "boundary" not in res["condition_fields"]["gauss:1.6,15|2.55"]
    told, circ = res["methods"]["dpir"][key]["psnr"], res["methods"]["dpir-circular"][key]["psnr"]
    assert told > circ + 3, (told, circ)
    # on a periodic blur the two are the same program
    same = [res["methods"][m]["gauss:1.6,15|2.55"]["psnr"] for m in ("dpir", "dpir-circular")]
    assert same[0] == pytest.approx(same[1], abs=1e-6)


BAD_DEGRADATIONS = [
    (["--task", "sr", "--mask", "random:0.5"], "--mask random:0.5: --mask is for --task inpaint"),
    (["--task", "deblur", "--kernel", "nonsense"], "--kernel nonsense: .*unknown kernel"),
    (["--task", "deblur", "--noise", "-1"], "--noise: noise levels are >= 0"),
    (["--task", "deblur", "--method", "bicubic"], "--method bicubic: does not apply to task "
                                                  "'deblur'"),
    (["--task", "inpaint", "--mask", "random:1.5"], "random:P needs the missing fraction"),
    (["--task", "deblur", "--sigma", "25"], "--sigma 25: the dpir protocol's noise level is "
                                            "--noise"),
    (["--kernel", "levin"], "--kernel levin: protocol 'standard' denoises"),
    (["--task", "deblur", "--protocol", "standard"], "protocol 'standard' is for 'denoise'"),
    (["--task", "deblur", "--scale", "2"], "--scale 2: --scale is for --task sr"),
    (["--task", "sr", "--boundary", "unknown"], "--boundary unknown: --boundary is for --task "
                                                "deblur"),
    (["--boundary", "unknown"], "--boundary unknown: protocol 'standard' denoises"),
]


@pytest.mark.parametrize("extra,expected", BAD_DEGRADATIONS,
                         ids=[" ".join(a) for a, _ in BAD_DEGRADATIONS])
def test_bad_degradation_arguments(extra, expected, crops, tmp_path, capsys):
    import re

    out = tmp_path / "out"
    msg = _fails(["--dataset", "folder", "--data-dir", str(crops), "--out", str(out), *extra],
                 capsys, code=2)
    assert re.search(expected, msg), msg
    _nothing_left(tmp_path, "out")


def test_recorded_blur_takes_no_known_degradation(pairs, tmp_path, capsys):
    for extra, expected in ((["--task", "sr"], "--task sr: dataset 'folder'.*blur/sharp pairs"),
                            (["--noise", "2.55"], "--noise 2.55: protocol 'gopro' restores "
                                                  "recorded blur"),
                            (["--kernel", "levin"], "--kernel levin: protocol 'gopro'"),
                            (["--boundary", "unknown"], "--boundary unknown: protocol 'gopro'")):
        import re

        msg = _fails(["--dataset", "folder", "--data-dir", str(pairs), "--out",
                      str(tmp_path / "o"), *extra], capsys, code=2)
        assert re.search(expected, msg), msg
