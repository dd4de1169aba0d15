"""The worked examples of docs/extending.md run as written, alone, and do what the page says:
the forward-only Fourier operator restores far above its zero-filled start, the registered
heavy-ball algorithm runs as a mode, the hand-made network smooths."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_shared

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "extending.md"


def blocks():
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)


def run(code):
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def numbers(out, label):
    return float(re.search(re.escape(label) + r"[^\d-]*([\d.]+) dB", out).group(1))


def test_three_examples():
    assert len(blocks()) == 3


def test_operator_example():
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    out = run(blocks()[0])
    zf = numbers(out, "zero-filled")
    assert numbers(out, "admm:") > zf + 5 and numbers(out, "pgd:") > zf + 3, out


def test_algorithm_example():
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    out = run(blocks()[1])
    assert numbers(out, "pgd:") > 25 and numbers(out, "pgd-heavy-ball:") > 25, out


def test_network_example():
    out = run(blocks()[2])
    m = re.search(r"noisy ([\d.]+) dB -> smoothed ([\d.]+) dB", out)
    assert m and float(m.group(2)) > float(m.group(1)) + 3, out
