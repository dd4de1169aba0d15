"""The README's quickstart runs as written from the repository root."""
import re
import subprocess
import sys
from pathlib import Path

from conftest import require_shared

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs(tmp_path):
    require_shared("data", "set12", "01.png")
    require_shared("upstream", "dncnn", "sigma=25.mat")
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Quickstart.*?```python\n(.*?)```", text, re.S).group(1)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    m = re.search(r"noisy ([\d.]+) dB -> restored ([\d.]+) dB", res.stdout)
    assert m, res.stdout
    noisy, restored = map(float, m.groups())
    assert 20.0 < noisy < 21.5 and 29.5 < restored < 31.0


def test_deblurring_example_runs(tmp_path):
    """The README's deblurring example (after the quickstart's imports) reproduces DPIR with
    FFDNet on Set3G house, Levin kernel 1, noise 2.55: 35.35 dB (RESULTS.md)."""
    require_shared("data", "set3g", "house.png")
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    setup = blocks[0].split("net = ")[0]  # the imports
    deblur = next(b for b in blocks if "Blur.from_kernel" in b)
    res = subprocess.run([sys.executable, "-c", setup + deblur], cwd=ROOT, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    last = float(res.stdout.strip().split()[-1].strip("[]"))
    assert abs(last - 35.35) < 0.1, res.stdout


def test_unknown_boundary_example_runs(tmp_path):
    """The README's photograph example (after the deblurring one): the frame of the blurred
    house, told the boundary is unknown, restored to about 34 dB."""
    require_shared("data", "set3g", "house.png")
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    setup = blocks[0].split("net = ")[0]
    deblur = next(b for b in blocks if "Blur.from_kernel(k, 1)" in b)
    photo = next(b for b in blocks if 'boundary="unknown"' in b)
    res = subprocess.run([sys.executable, "-c", setup + deblur + photo], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    m = re.search(r"frame PSNR: ([\d.]+)", res.stdout)
    assert m, res.stdout
    claimed = float(re.search(r"# ([\d.]+) dB", photo).group(1))
    assert abs(float(m.group(1)) - claimed) < 0.1, (res.stdout, claimed)
