"""Every ```python block of the README runs on its own, in a fresh interpreter, from the repository
root, and prints what the README says it prints.

Each block must carry its own imports (a reader copies one block, not the page). The numbers
checked: the quickstart (Set12 01.png, sigma 25, DnCNN-S, ``authors`` mode) gets noisy 20-21.5 dB
and restored 29.5-31 dB; the deblurring example (Set3G house, Levin k1, noise 2.55, FFDNet, DPIR's
schedule, x8) ends at 35.35 +- 0.1 dB, the DPIR reference value of that image and kernel
(docs/results/known_degradations.md); the user-operator example (a blur then a Bayer mosaic given
by its forward alone, PnP-ADMM, FFDNet-colour, Set5 butterfly) ends above 31 dB, 20 dB above the
mosaic; the photograph example writes a restored picture of the input's size.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_shared

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)]


BLOCKS = python_blocks(README.read_text())


def _require_inputs(code: str) -> None:
    """Skip (fail under CI) when a file the block reads from ../shared is missing: the data paths
    it names, and the upstream files of the networks it loads."""
    for rel in re.findall(r"""["']\.\./shared/([^"']+)["']""", code):
        require_shared(*rel.split("/"))
    names = re.findall(r"""load_network\(\s*["']([^"']+)["']""", code)
    if names:
        from dynpnp_jax.weights import REGISTRY

        for name in names:
            for f in REGISTRY[name].files:
                require_shared("upstream", *f.relpath.split("/"))


def _is_deblur_example(code: str) -> bool:
    return 'make_config("dpir"' in code and "Blur.from_kernel(k, 1)" in code


def _check_numbers(code: str, out: str) -> int:
    """Check every number a block prints that the README states; returns how many were checked."""
    checked = 0
    m = re.search(r"noisy ([\d.]+) dB -> restored ([\d.]+) dB", out)
    if m:
        noisy, restored = map(float, m.groups())
        assert 20.0 < noisy < 21.5 and 29.5 < restored < 31.0, out
        checked += 1
    if _is_deblur_example(code):
        m = re.search(r"PSNR per iteration: \[([^\]]*)\]", out)
        assert m, out
        last = float(m.group(1).split()[-1])
        assert abs(last - 35.35) < 0.1, out
        checked += 1
    m = re.search(r"mosaic ([\d.]+) dB -> admm ([\d.]+) dB", out)
    if m:
        mosaic, admm = map(float, m.groups())
        assert admm > 31.0 and admm > mosaic + 20, out
        checked += 1
    m = re.search(r'write_image\("([^"]+)"', code)
    if m:
        from PIL import Image

        src = re.search(r'read_image\("([^"]+)"', code).group(1)
        with Image.open(ROOT / m.group(1)) as a, Image.open(ROOT / src) as b:
            assert a.size == b.size and a.mode == b.mode
        (ROOT / m.group(1)).unlink()
        checked += 1
    return checked


def test_readme_carries_the_checked_examples():
    """The four examples whose results are checked are in the README, each as its own block."""
    codes = [code for _, code in BLOCKS]
    assert any("-> restored" in c and "dncnn-s25" in c for c in codes)
    assert any(_is_deblur_example(c) for c in codes)
    assert any("class " in c and "(Operator)" in c and "admm" in c for c in codes)
    assert any("restore_photo" in c and "write_image" in c for c in codes)


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_block_runs_alone(line, code):
    _require_inputs(code)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, f"README.md line {line}: the block fails on its own:\n" + \
        res.stderr[-3000:]
    _check_numbers(code, res.stdout)
