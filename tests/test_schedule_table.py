"""``bench/schedule_table.py``: the tuned-schedule tables read from eval result folders (means and
the issue's differences computed from the per-image PSNRs), and the schedule figure."""
import importlib.util
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("schedule_table", ROOT / "bench" / "schedule_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _folder(tmp_path, name, iters, psnr):
    """A minimal eval results.json: methods x (noise 2.55, kernels k1 k2) x two images."""
    res = {"methods": {}, "condition_fields": {}, "config": {}}
    for method, base in psnr.items():
        res["methods"][method], res["config"][method] = {}, {}
        for j, kern in enumerate(("levin:1", "levin:2")):
            key = f"k={kern}, noise=2.55"
            res["condition_fields"][key] = {"noise": 2.55, "kernel": kern}
            res["config"][method][key] = {"iters": iters}
            res["methods"][method][key] = {"per_image": {
                f"img{i}": {"psnr": base + j + 0.5 * i, "ssim": 0.9} for i in range(2)}}
    d = tmp_path / name
    d.mkdir()
    (d / "results.json").write_text(json.dumps(res))
    return d


def test_tables_compute_the_issue_differences(tmp_path):
    t8 = _folder(tmp_path, "T8", 8, {"dpir": 30.0, "dpir-tuned": 30.1})
    t4 = _folder(tmp_path, "T4", 4, {"dpir": 29.5, "dpir-tuned": 30.05})
    out = _module().tables([t8, t4])
    # means over 2 kernels x 2 images: base + 0.5 + 0.25
    assert "| dpir | 8 | 30.25 | 31.25 | **30.75** | 0.9000 |" in out
    assert "| dpir-tuned | 4 |" in out and "**30.80**" in out
    row = [l for l in out.splitlines() if l.startswith("| 2.55 | dpir-tuned |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    np.testing.assert_allclose([float(c) for c in cells[2:]], [0.1, 0.05, -0.5], atol=1e-9)


def test_figure_of_the_shipped_schedules(tmp_path):
    png = tmp_path / "s.png"
    assert _module().main(["--figure", str(png), "--noise", "7.65"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
