"""The Colab notebooks run top to bottom on CPU with small inputs (their code cells, in order)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_shared

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_runs(nb, tmp_path):
    require_shared("data", "set12")
    require_shared("upstream", "dncnn")
    cells = json.loads(nb.read_text())["cells"]
    code = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    env = {**os.environ, "DYNPNP_NOTEBOOK_SMALL": "1", "MPLBACKEND": "Agg"}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "recompilations: 0" in res.stdout
