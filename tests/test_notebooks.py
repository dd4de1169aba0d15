"""The Colab notebooks: they open with the runtime set-up cells and run top to bottom on CPU with
small inputs (their code cells, in order, in a fresh process with ``DYNPNP_NOTEBOOK_SMALL=1``),
and what they print makes sense (each notebook's ``summary`` of mean PSNRs is checked below)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_shared

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MARK = "NOTEBOOK_SUMMARY "


def _check_denoise(s: dict, stdout: str) -> None:
    assert "recompilations: 0" in stdout
    assert set(s) == {"noisy", "prior", "static", "hqs", "authors", "gradient"}
    assert s["prior"] > s["noisy"] + 5                 # DnCNN-S denoises (64 px crops, sigma 25)
    assert abs(s["authors"] - s["prior"]) < 0.5       # the dynamic loop stays near the network
    assert abs(s["gradient"] - s["prior"]) < 0.5
    assert s["static"] < s["prior"]                   # stacking the same denoiser twice loses


def _check_deblur(s: dict, stdout: str) -> None:
    known, wrong, gopro = s["known kernel"], s["wrong kernel"], s["gopro"]
    assert known["dpir"] > known["input"] + 5         # Levin k1, 4 iterations, 96 px crops
    assert wrong["dpir, true kernel"] > wrong["dpir, given kernel"] + 1
    assert wrong["calibrated from the given kernel"] > wrong["dpir, given kernel"] + 0.5
    assert wrong["dpir, given kernel"] > wrong["input"]
    photo = s["photograph"]                            # a frame of the blurred scene
    assert photo["dpir, told unknown"] > photo["dpir, told circular"] + 3
    assert photo["dpir, told unknown"] > photo["input"] + 3
    assert set(gopro) == {"input", "prior", "authors"}  # the GoPro section ran (shared has it)
    assert gopro["prior"] > gopro["input"] + 3        # DMPHN deblurs a 128 px crop
    assert abs(gopro["authors"] - gopro["prior"]) < 0.5


# notebook -> (shared paths it reads, python modules it needs, check of its summary)
NEEDS = {
    "colab_tpu_denoise.ipynb": ([("data", "set12"), ("upstream", "dncnn")], [], _check_denoise),
    "colab_tpu_deblur.ipynb": ([("data", "set3g"), ("data", "kernels"), ("data", "gopro"),
                                ("upstream", "ffdnet"), ("upstream", "dmphn"),
                                ("upstream", "dncnn")], ["torch"], _check_deblur),
}


def _cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text())["cells"]


def _code(nb: Path) -> list[str]:
    return ["".join(c["source"]) for c in _cells(nb) if c["cell_type"] == "code"]


def test_every_notebook_is_checked():
    assert {nb.name for nb in NOTEBOOKS} == set(NEEDS)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_runtime_setup(nb):
    """A valid notebook whose first code cells install the package, check the devices and fetch
    the weights; no outputs are stored (the tests run it)."""
    doc = json.loads(nb.read_text())
    assert doc["nbformat"] == 4 and doc["metadata"].get("accelerator") == "TPU"
    try:
        import nbformat
    except ImportError:
        pass
    else:
        nbformat.validate(nbformat.reads(nb.read_text(), as_version=4))
    assert all(not c.get("outputs") for c in doc["cells"] if c["cell_type"] == "code")
    install, runtime, fetch = _code(nb)[:3]
    assert "pip" in install and "install" in install and "find_spec(\"dynpnp_jax\")" in install
    assert "jax.devices()" in runtime and "SMALL" in runtime
    assert "weights.convert(" in fetch


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(nb, tmp_path):
    shared, modules, check = NEEDS[nb.name]
    for parts in shared:
        require_shared(*parts)
    for mod in modules:
        pytest.importorskip(mod)
    code = "\n\n".join(_code(nb))
    code += f"\n\nimport json as _json\nprint({MARK!r} + _json.dumps(summary))\n"
    # the checkout under test, not whatever copy of the package is installed
    path = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env = {**os.environ, "DYNPNP_NOTEBOOK_SMALL": "1", "MPLBACKEND": "Agg", "PYTHONPATH": path}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    line = [l for l in res.stdout.splitlines() if l.startswith(MARK)]
    assert len(line) == 1, res.stdout[-3000:]
    check(json.loads(line[0][len(MARK):]), res.stdout)
