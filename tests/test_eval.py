"""The evaluation CLI end to end on two small images."""
import json

import numpy as np
import pytest
from PIL import Image

from dynpnp_jax import eval as ev

from conftest import require_shared


@pytest.fixture
def two_images(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNPNP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DYNPNP_DATA", raising=False)
    src = require_shared("data", "set12")
    folder = tmp_path / "pngs"
    folder.mkdir()
    for name in ("01", "05"):
        img = np.asarray(Image.open(src / f"{name}.png"))[64:128, 32:128]  # 64x96 crops
        Image.fromarray(img).save(folder / f"img{name}.png")
    require_shared("upstream", "dncnn", "sigma=25.mat")
    return folder


def test_cli_folder_end_to_end(two_images, tmp_path):
    out = tmp_path / "out"
    ev.main(["--dataset", "folder", "--data-dir", str(two_images), "--sigma", "25",
             "--out", str(out), "--save-images"])
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"] == "standard" and res["dataset"] == "folder"
    assert set(res["methods"]) == {"prior", "static", "hqs", "authors", "gradient"}
    for method, per in res["methods"].items():
        r = per["25"]
        assert r["n_images"] == 2 and set(r["per_image"]) == {"img01", "img05"}
        assert 20.0 < r["psnr"] < 40.0 and 0.3 < r["ssim"] <= 1.0
        np.testing.assert_allclose(r["psnr"], np.mean([v["psnr"] for v in r["per_image"].values()]))
        iters = 1 if method == "prior" else res["config"][method]["25"]["iters"]
        assert len(r["psnr_per_iter_mean"]) == iters
    # the network alone beats the noisy input by a wide margin on these crops
    assert res["methods"]["prior"]["25"]["psnr"] > 26.0
    assert res["config"]["authors"]["25"] == {"mode": "authors", "iters": 2, "mu": 0.1,
                                              "delta": 0.01, "alpha": 1e-5}
    assert res["versions"]["jax"]
    for name in ("results.csv", "convergence.png", "examples.png"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "images" / "authors").glob("*.png"))) == 2
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 5 * 2


def test_cli_authors_protocol_and_method_subset(two_images, tmp_path):
    out = tmp_path / "out2"
    ev.main(["--dataset", "folder", "--data-dir", str(two_images), "--sigma", "15", "50",
             "--method", "prior", "authors", "--protocol", "authors", "--out", str(out)])
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"] == "authors" and set(res["methods"]) == {"prior", "authors"}
    assert set(res["methods"]["authors"]) == {"15", "50"}
    assert res["methods"]["prior"]["15"]["psnr"] > res["methods"]["prior"]["50"]["psnr"]


def test_cli_errors(tmp_path):
    with pytest.raises(SystemExit, match="unknown dataset"):
        ev.main(["--dataset", "imagenet"])
    with pytest.raises(SystemExit):
        ev.main(["--dataset", "set12", "--method", "admm", "--limit", "1"])


def test_cli_iters_override_extends_per_iteration_values(two_images, tmp_path):
    out = tmp_path / "out3"
    ev.main(["--dataset", "folder", "--data-dir", str(two_images), "--sigma", "25",
             "--method", "static", "gradient", "--iters", "4", "--out", str(out)])
    res = json.loads((out / "results.json").read_text())
    for method in ("static", "gradient"):
        assert len(res["methods"][method]["25"]["psnr_per_iter_mean"]) == 4
    kw = res["config"]["gradient"]["25"]
    assert kw["iters"] == 4 and len(kw["delta"]) == 4 and kw["delta"][3] == kw["delta"][1]
