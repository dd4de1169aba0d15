"""FFDNet denoising from the evaluation CLI: a noise-conditioned prior is given the true noise
level by default (as the FFDNet paper evaluates), ``--noise-level`` overrides it, and the CLI's
score is FFDNet's own on the same image; refusals name the fix."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import require_shared
from dynpnp_jax import eval as ev

ROOT = Path(__file__).resolve().parents[1]


def _ffdnet_alone(sigma_in: float) -> float:
    """FFDNet-gray on Set12 image 01 under the standard protocol, called directly."""
    from PIL import Image

    from dynpnp_jax import load_network
    from dynpnp_jax.data import get_protocol

    img = np.asarray(Image.open(require_shared("data", "set12", "01.png")).convert("L"))[..., None]
    proto = get_protocol("standard")
    prob = proto.problem({"image": img, "name": "01"}, 25)
    net = load_network("ffdnet-gray")
    out = np.asarray(net.apply(prob.y[None], sigma=sigma_in / 255.0))[0]
    return proto.evaluate(out, prob.meta)["psnr"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    require_shared("data", "set12")
    require_shared("upstream", "ffdnet")
    base = tmp_path_factory.mktemp("ffdnet_cli")
    out = {}
    for name, extra in (("true", []), ("override", ["--noise-level", "50"])):
        ev.main(["--config", str(ROOT / "configs" / "denoise_ffdnet.py"), "--dataset", "set12",
                 "--sigma", "25", "--method", "prior", "--limit", "1", "--out",
                 str(base / name), "--no-compile-cache", *extra])
        out[name] = json.loads((base / name / "results.json").read_text())
    return out


def test_cli_ffdnet_equals_ffdnet_alone_at_the_true_noise_level(runs):
    res = runs["true"]
    assert res["prior"] == "ffdnet-gray"
    assert res["config"]["prior"]["25"]["sigma"] == pytest.approx(25 / 255)
    cli = res["methods"]["prior"]["25"]["psnr"]
    assert cli == pytest.approx(_ffdnet_alone(25), abs=1e-4)
    assert cli > 29.5  # image 01 at sigma 25 (FFDNet: 30.05 dB)
    assert any("true sigma/255" in n for n in res["notes"])
    assert res["published"]["FFDNet (published)"]["25"][0] == 30.43


def test_cli_noise_level_override(runs):
    res = runs["override"]
    assert res["config"]["prior"]["25"]["sigma"] == pytest.approx(50 / 255)
    over = res["methods"]["prior"]["25"]["psnr"]
    assert over == pytest.approx(_ffdnet_alone(50), abs=1e-4)
    assert over < runs["true"]["methods"]["prior"]["25"]["psnr"] - 0.5  # over-smoothed


@pytest.mark.parametrize("argv,expected", [
    (["--dataset", "set12", "--prior", "dncnn-s25", "--noise-level", "25"],
     "takes no noise level as input"),
    (["--dataset", "set5", "--task", "sr", "--noise-level", "25"], "is for denoising"),
])
def test_noise_level_refused_where_it_means_nothing(argv, expected, tmp_path, capsys):
    require_shared("data")
    with pytest.raises(SystemExit) as info:
        ev.main([*argv, "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
