"""The restore command on IRCNN's real pictures (``../shared/data/ircnn_real``): every picture
restored, contact sheets beside IRCNN's own output, and a table.

    nice -n 10 python bench/real_photographs.py --set all --out /tmp/real          # full size
    nice -n 10 python bench/real_photographs.py --set deblur --downscale 4 --out /tmp/real4

What it does, per set:

* checks the folder's pairings file by file (``deblur/``: ``NAME.png|jpg`` with exactly one
  ``NAME_kernel.png`` and one ``NAME_ircnn_Isigma_A_Msigma_B.png`` of the same size, 32 pictures;
  ``sisr/``: ``LR*_x2.png`` with ``*_kernel.png`` and ``*_ircnn_x2.png`` of twice the size, and
  the bicubic cases ``David_Hilbert``, ``Frog``, ``chip`` x2 and x4; ``inpaint/``: the
  ``*_masked.png`` pictures whose black pixels are the holes (the fraction of black pixels must
  match the percentage in the name) and ``3ch``/``new`` with ``*_mask.png``, white = missing,
  checked by where IRCNN changed the picture);
* runs the command's own entry point (``dynpnp_jax.restore_cli.main``, the same as
  ``python -m dynpnp_jax.restore``) per set with ``--noise auto`` (or ``--noise N``), its
  ``--log`` giving the time and noise level per picture;
* checks every output (finished, the input's size -- or ``scale`` times it -- and channels);
* measures the re-blur residual: the std of ``y - k * x`` on the frame (the ``valid`` part of
  the convolution: no pixel there depends on the scene outside the picture), in 8-bit units,
  for this library's ``x`` and for IRCNN's, beside the noise level used; the same std on the
  16-pixel band along the frame's edge over the interior's (``edge/int``: about 1 when nothing
  rings at the edge); for SR the residual of the down-sampled output, for inpainting the
  residual on the observed pixels and the PSNR against the original where the folder has it;
* draws one contact sheet per set (``docs/figures/real_<set>.png``): per picture, the whole
  input, then 1:1 crops of the centre and of the top-left corner: input | this library | IRCNN;
* writes the table (Markdown) and the records (JSON) to ``--out``.

``--downscale F`` runs on copies shrunk by F (pictures by area averaging, kernels likewise and
renormalised) for a quick look; the published numbers are full size.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dynpnp_jax import imageio, paths  # noqa: E402
from dynpnp_jax.restore_cli import main as restore_main  # noqa: E402

SETS = ("deblur", "sisr", "inpaint")
N_DEBLUR = 32


# ------------------------------------------------------------------------------ pairings
def deblur_cases(folder: Path) -> list[dict]:
    cases = []
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() not in (".png", ".jpg") or "_ircnn_" in f.name or \
                f.stem.endswith("_kernel"):
            continue
        kern = folder / f"{f.stem}_kernel.png"
        ircnn = sorted(folder.glob(f"{glob_escape(f.stem)}_ircnn_Isigma_*_Msigma_*.png"))
        if not kern.is_file():
            raise SystemExit(f"pairing: {f.name} has no {kern.name}")
        if len(ircnn) != 1:
            raise SystemExit(f"pairing: {f.name}: expected one IRCNN output, found "
                             f"{[p.name for p in ircnn]}")
        m = re.search(r"_ircnn_Isigma_(\d+)_Msigma_(\d+)\.png$", ircnn[0].name)
        size_in, size_ir = Image.open(f).size, Image.open(ircnn[0]).size
        if size_in != size_ir:
            raise SystemExit(f"pairing: {f.name} is {size_in}, its IRCNN output {size_ir}")
        cases.append(dict(name=f.stem, input=f, kernel=kern, ircnn=ircnn[0], scale=1,
                          ircnn_noise=int(m.group(1)), ircnn_final=int(m.group(2))))
    if len(cases) != N_DEBLUR:
        raise SystemExit(f"pairing: expected {N_DEBLUR} blurry pictures in {folder}, found "
                         f"{len(cases)}")
    return cases


def glob_escape(s: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", s)


def sisr_cases(folder: Path) -> list[dict]:
    cases = []
    for f in sorted(folder.glob("LR*_x2.png")):
        if f.stem.endswith(("_kernel", "_ircnn_x2")):
            continue
        cases.append(dict(name=f.stem, input=f, kernel=folder / f"{f.stem}_kernel.png",
                          ircnn=folder / f"{f.stem}_ircnn_x2.png", scale=2))
    for stem, scales in (("David_Hilbert", (2,)), ("Frog", (2,)), ("chip", (2, 4))):
        for s in scales:
            cases.append(dict(name=f"{stem}_x{s}", input=folder / f"{stem}.png", kernel=None,
                              ircnn=folder / f"{stem}_ircnn_x{s}.png", scale=s))
    for c in cases:
        for key in ("input", "kernel", "ircnn"):
            if c[key] is not None and not c[key].is_file():
                raise SystemExit(f"pairing: {c['name']}: {c[key]} missing")
        w, h = Image.open(c["input"]).size
        wi, hi = Image.open(c["ircnn"]).size
        if (wi, hi) != (w * c["scale"], h * c["scale"]):
            raise SystemExit(f"pairing: {c['name']}: IRCNN output {wi}x{hi} is not x{c['scale']} "
                             f"of {w}x{h}")
    return cases


def inpaint_cases(folder: Path) -> list[dict]:
    cases = []
    for f in sorted(folder.glob("*_masked.png")):
        m = re.match(r"(.+)_(\d+)_masked$", f.stem)
        base, pct = m.group(1), int(m.group(2))
        x, _ = imageio.read_image(f)
        black = float((x[0].max(-1) == 0).mean())
        if abs(black - pct / 100) > 0.02:
            raise SystemExit(f"pairing: {f.name}: {100 * black:.1f} % black pixels, the name says "
                             f"{pct} % missing")
        orig = folder / f"{base}.png"
        cases.append(dict(name=f.stem, input=f, mask="zeros", ircnn=folder / f"{base}_{pct}_ircnn.png",
                          original=orig if orig.is_file() else None, scale=1, missing=black))
    for stem in ("3ch", "new"):
        inp, mask, ir = (folder / f"{stem}.png", folder / f"{stem}_mask.png",
                         folder / f"{stem}_ircnn.png")
        x, _ = imageio.read_image(inp)
        mk, _ = imageio.read_image(mask)
        xi, _ = imageio.read_image(ir)
        white = mk[0].max(-1) >= 0.5
        change = np.abs(xi[0] - x[0]).mean(-1)
        on, off = float(change[white].mean()), float(change[~white].mean())
        if not on > 3 * off:
            raise SystemExit(f"pairing: {stem}: IRCNN changed the white mask pixels by {on:.3f} "
                             f"and the others by {off:.3f}: white does not mark the missing pixels")
        cases.append(dict(name=stem, input=inp, mask=mask, ircnn=ir, original=None, scale=1,
                          missing=float(white.mean()), change_on_off=(on, off)))
    for c in cases:
        if not c["ircnn"].is_file():
            raise SystemExit(f"pairing: {c['name']}: {c['ircnn']} missing")
    return cases


# ------------------------------------------------------------------------------ copies
def shrink(img: Image.Image, f: int) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, w // f), max(1, h // f)), Image.BOX)


def shrink_kernel(path: Path, f: int, dst: Path) -> None:
    k = np.asarray(Image.open(path).convert("L"), np.float64)
    n = max(3, (k.shape[0] // f) | 1)
    small = np.asarray(Image.fromarray(k).resize((n, n), Image.BOX), np.float64)
    small = np.clip(small, 0, None)
    Image.fromarray(np.uint8(np.round(255 * small / small.max()))).save(dst)


def downscaled_copy(cases: list[dict], f: int, where: Path, nearest: bool = False) -> list[dict]:
    """Copies shrunk by ``f`` (``nearest``: keep every f-th pixel, so that holes stay holes)."""
    where.mkdir(parents=True, exist_ok=True)
    out = []
    for c in cases:
        c = dict(c)
        for key in ("input", "ircnn", "original"):
            if c.get(key) is None:
                continue
            dst = where / c[key].name.replace(".jpg", ".png")
            if not dst.exists():
                im = Image.open(c[key])
                if nearest:
                    im.resize((max(1, im.width // f), max(1, im.height // f)),
                              Image.NEAREST).save(dst)
                else:
                    shrink(im, f).save(dst)
            c[key] = dst
        if c.get("kernel") is not None:
            dst = where / c["kernel"].name
            if not dst.exists():
                shrink_kernel(c["kernel"], f, dst)
            c["kernel"] = dst
        if isinstance(c.get("mask"), Path):
            dst = where / c["mask"].name
            if not dst.exists():
                m = np.asarray(Image.open(c["mask"]).convert("L")) >= 128
                Image.fromarray(np.uint8(255 * m)).resize(Image.open(c["input"]).size,
                                                          Image.NEAREST).save(dst)
            c["mask"] = dst
        out.append(c)
    return out


# ------------------------------------------------------------------------------ measures
def conv_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return np.stack([fftconvolve(x[..., c], k, mode="valid") for c in range(x.shape[-1])], -1)


def frame_residual(y: np.ndarray, x: np.ndarray, k: np.ndarray, band: int = 16) -> tuple:
    """std of y - k * x on the valid frame (8-bit units) and the band/interior ratio."""
    kh, kw = k.shape
    r = (y[kh // 2: y.shape[0] - (kh - 1 - kh // 2), kw // 2: y.shape[1] - (kw - 1 - kw // 2)]
         - conv_valid(x, k)) * 255
    inner = r[band:-band, band:-band]
    edge = np.ones(r.shape[:2], bool)
    edge[band:-band, band:-band] = False
    return float(r.std()), float(r[edge].std() / max(inner.std(), 1e-9))


def sr_residual(y: np.ndarray, x: np.ndarray, k: np.ndarray, s: int) -> float:
    from scipy import ndimage

    blurred = np.stack([ndimage.convolve(x[..., c], k, mode="mirror") for c in range(x.shape[-1])],
                       -1)
    return float(((y - blurred[0::s, 0::s][:y.shape[0], :y.shape[1]]) * 255)[4:-4, 4:-4].std())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.round(a * 255) - np.round(b * 255)) ** 2))
    return 10 * np.log10(255 ** 2 / max(mse, 1e-12))


def kernel_of(path) -> np.ndarray:
    from dynpnp_jax.restore_cli import load_kernel

    return load_kernel(str(path))


# ------------------------------------------------------------------------------ runs
def run_set(name: str, cases: list[dict], out: Path, noise: str, extra: list[str]) -> dict:
    """Runs the command per group of cases; returns {case name: log record}."""
    log = out / f"{name}.jsonl"
    res = out / name
    res.mkdir(parents=True, exist_ok=True)
    groups = []
    if name == "deblur":
        groups.append(([c["input"] for c in cases],
                       ["--task", "deblur", "--kernel", "{stem}_kernel.png"]))
    elif name == "sisr":
        for c in cases:
            args = ["--task", "sr", "--scale", str(c["scale"])]
            if c["kernel"] is not None:
                args += ["--kernel", str(c["kernel"])]
            groups.append(([c["input"]], args, c["name"]))
    else:
        for c in cases:
            groups.append(([c["input"]], ["--task", "inpaint", "--mask", str(c["mask"])],
                           c["name"]))
    for g in groups:
        inputs, args = g[0], g[1]
        if len(g) == 3:
            dst = res / f"{g[2]}.png"
        else:
            dst = res
        todo = [p for p in inputs if not (res / (p.stem + ".png")).exists()] if len(g) == 2 \
            else ([] if dst.exists() else inputs)
        if not todo:
            continue
        argv = [str(p) for p in todo] + ["-o", str(dst if len(g) == 3 else res), "--noise", noise,
                                         "--ext", ".png", "--log", str(log)] + extra + args
        if len(g) == 2 and len(todo) == 1:
            argv[argv.index("-o") + 1] = str(res / (todo[0].stem + ".png"))
        print("python -m dynpnp_jax.restore " + " ".join(argv[:3]) + (" ..." if len(argv) > 3
              else ""), flush=True)
        rc = restore_main(argv)
        if rc != 0:
            print(f"WARNING: restore exited with {rc} on {[p.name for p in todo]}", flush=True)
    records = {}
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        records[Path(rec["output"]).stem] = rec
    return records


def measure(name: str, cases: list[dict], out: Path, records: dict) -> list[dict]:
    rows = []
    for c in cases:
        key = c["name"] if name != "deblur" else c["input"].stem
        rec = records.get(key)
        if rec is None:
            print(f"FAILED: {c['name']}: no output (the run did not finish it)", flush=True)
            rows.append(dict(name=c["name"], failed=True))
            continue
        y, info_in = imageio.read_image(c["input"])
        x, info_out = imageio.read_image(rec["output"])
        xi, _ = imageio.read_image(c["ircnn"])
        s = c["scale"]
        want = (info_in.height * s, info_in.width * s, info_in.channels)
        got = (info_out.height, info_out.width, info_out.channels)
        if got != want:
            raise SystemExit(f"{c['name']}: output {got}, expected {want}")
        row = dict(name=c["name"], size=f"{info_in.width}x{info_in.height}x{info_in.channels}",
                   seconds=rec["seconds"], noise=rec["noise"], tile=rec["tile"],
                   estimate=rec.get("noise_estimate") if rec.get("noise_estimate") is not None
                   else rec["noise"])
        y0, x0, xi0 = y[0], x[0], xi[0]
        if xi0.shape[-1] != x0.shape[-1]:
            xi0 = np.repeat(xi0, 3, -1) if xi0.shape[-1] == 1 else xi0.mean(-1, keepdims=True)
        if name == "deblur":
            k = kernel_of(c["kernel"])
            row["kernel"] = k.shape[0]
            row["res"], row["edge"] = frame_residual(y0, x0, k)
            row["res_ircnn"], row["edge_ircnn"] = frame_residual(y0, xi0, k)
            row["ircnn_noise"] = c["ircnn_noise"]
        elif name == "sisr":
            k = kernel_of(c["kernel"] if c["kernel"] is not None else f"bicubic:{s}")
            row["res"] = sr_residual(y0, x0, k, s)
            row["res_ircnn"] = sr_residual(y0, xi0, k, s)
        else:
            m = (y0.max(-1) > 0) if c["mask"] == "zeros" else None
            if m is None:
                mk, _ = imageio.read_image(c["mask"])
                m = mk[0].max(-1) < 0.5
            row["missing"] = float(1 - m.mean())
            row["res"] = float(((y0 - x0)[m] * 255).std())
            row["res_ircnn"] = float(((y0 - xi0)[m] * 255).std())
            if c.get("original") is not None:
                g, _ = imageio.read_image(c["original"])
                row["psnr"], row["psnr_ircnn"] = psnr(x0, g[0]), psnr(xi0, g[0])
        rows.append(row)
    return rows


def table(name: str, rows: list[dict]) -> str:
    failed = [r["name"] for r in rows if r.get("failed")]
    rows = [r for r in rows if not r.get("failed")]
    tail = f"\nFAILED (no output): {', '.join(failed)}\n" if failed else ""
    if name == "deblur":
        head = ("| picture | size | kernel | time (s) | noise estimate | noise used | IRCNN's noise "
                "| residual | IRCNN residual | edge/int | IRCNN edge/int |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|")
        lines = [f"| {r['name']} | {r['size']} | {r['kernel']} | {r['seconds']:.1f} | "
                 f"{r['estimate']:.2f} | {r['noise']:.2f} | {r['ircnn_noise']} | {r['res']:.2f} | {r['res_ircnn']:.2f} | "
                 f"{r['edge']:.2f} | {r['edge_ircnn']:.2f} |" for r in rows]
    elif name == "sisr":
        head = ("| picture | size | time (s) | noise estimate | noise used | residual | "
                "IRCNN residual |\n|---|---|---|---|---|---|---|")
        lines = [f"| {r['name']} | {r['size']} | {r['seconds']:.1f} | {r['estimate']:.2f} | "
                 f"{r['noise']:.2f} | "
                 f"{r['res']:.2f} | {r['res_ircnn']:.2f} |" for r in rows]
    else:
        head = ("| picture | size | missing | time (s) | noise used | residual | IRCNN residual |"
                " PSNR | IRCNN PSNR |\n|---|---|---|---|---|---|---|---|---|")
        lines = [f"| {r['name']} | {r['size']} | {100 * r['missing']:.0f} % | {r['seconds']:.1f} | "
                 f"{r['noise']:.2f} | {r['res']:.2f} | {r['res_ircnn']:.2f} | "
                 + (f"{r['psnr']:.2f} | {r['psnr_ircnn']:.2f} |" if "psnr" in r else "- | - |")
                 for r in rows]
    return head + "\n" + "\n".join(lines) + "\n" + tail


# ------------------------------------------------------------------------------ sheets
def _u8(x: np.ndarray) -> np.ndarray:
    a = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    return np.repeat(a, 3, -1) if a.shape[-1] == 1 else a


def contact_sheet(name: str, cases: list[dict], records: dict, dst: Path, cell: int = 120) -> None:
    """Per picture: the input (whole, shrunk), then 1:1 crops (centre, top-left corner) of
    input | this library | IRCNN. 256 colours, so that the sheet stays small."""
    cols = ["input", "centre: input", "this library", "IRCNN", "corner: input",
            "this library", "IRCNN"]
    label_h, pad = 14, 4
    rows_img = []
    for c in cases:
        key = c["name"] if name != "deblur" else c["input"].stem
        if key not in records:
            continue
        y, _ = imageio.read_image(c["input"])
        x, _ = imageio.read_image(records[key]["output"])
        xi, _ = imageio.read_image(c["ircnn"])
        s = c["scale"]
        yu = _u8(y[0])
        if s > 1:  # show the input at the output's scale (nearest neighbour)
            yu = np.repeat(np.repeat(yu, s, 0), s, 1)
        imgs = [yu, _u8(x[0]), _u8(xi[0])]
        h, w = imgs[1].shape[:2]
        thumb = Image.fromarray(_u8(y[0]))
        thumb.thumbnail((cell, cell), Image.BOX)
        cy, cx = max(0, h // 2 - cell // 2), max(0, w // 2 - cell // 2)
        cells = [np.asarray(thumb)]
        cells += [a[cy:cy + cell, cx:cx + cell] for a in imgs]
        cells += [a[:cell, :cell] for a in imgs]
        row = Image.new("RGB", (len(cols) * (cell + pad), cell + label_h), "white")
        d = ImageDraw.Draw(row)
        d.text((2, 1), f"{c['name']}  (noise {records[key]['noise']:.1f}/255)", fill="black")
        for j, a in enumerate(cells):
            row.paste(Image.fromarray(np.ascontiguousarray(a)), (j * (cell + pad), label_h))
        rows_img.append(row)
    head = Image.new("RGB", (len(cols) * (cell + pad), label_h + 2), "white")
    d = ImageDraw.Draw(head)
    for j, t in enumerate(cols):
        d.text((j * (cell + pad) + 2, 2), t, fill="black")
    sheet = Image.new("RGB", (head.width, head.height + sum(r.height for r in rows_img)), "white")
    sheet.paste(head, (0, 0))
    yy = head.height
    for r in rows_img:
        sheet.paste(r, (0, yy))
        yy += r.height
    dst.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(dst, quality=75, optimize=True)  # photographs: JPEG keeps the sheet well under 1 MB


def residual_plot(rows: list[dict], dst: Path) -> None:
    """Deblurring: the re-blur residual of each picture against the noise level each method
    assumed (this library: the estimate; IRCNN: its hand-set level). On the diagonal the output
    explains the picture down to the assumed noise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.2), dpi=110)
    rows = [r for r in rows if not r.get("failed")]
    ours = np.array([[r["noise"], r["res"]] for r in rows])
    theirs = np.array([[r["ircnn_noise"], r["res_ircnn"]] for r in rows])
    ax.scatter(ours[:, 0], ours[:, 1], s=16, label="this library (noise: estimated)")
    ax.scatter(theirs[:, 0], theirs[:, 1], s=16, marker="x",
               label="IRCNN (noise: set by hand per picture)")
    top = float(max(ours.max(), theirs.max())) * 1.05
    ax.plot([0, top], [0, top], "k:", lw=0.8, label="residual = noise level")
    ax.set_xlabel("noise level used (8-bit units)")
    ax.set_ylabel("std of y - k * x on the frame (8-bit units)")
    ax.set_title(f"Re-blur residual, {len(rows)} real blurry photographs", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(dst)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", choices=SETS + ("all",), default="all")
    p.add_argument("--data", default=None, help="the ircnn_real folder (default: shared/data)")
    p.add_argument("--out", default="/tmp/real_photographs")
    p.add_argument("--noise", default="auto")
    p.add_argument("--downscale", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="first N pictures per set (0: all)")
    p.add_argument("--figures", default=str(ROOT / "docs" / "figures"),
                   help="where the contact sheets go ('' : none)")
    p.add_argument("--extra", default="", help="more restore options, e.g. '--x8'")
    a = p.parse_args(argv)
    data = Path(a.data) if a.data else (paths.data_dir() or Path("../shared/data")) / "ircnn_real"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    makers = {"deblur": deblur_cases, "sisr": sisr_cases, "inpaint": inpaint_cases}
    summary = {}
    for name in (SETS if a.set == "all" else (a.set,)):
        cases = makers[name](data / name)
        print(f"{name}: {len(cases)} pictures, pairings checked", flush=True)
        if a.limit:
            cases = cases[:a.limit]
        if a.downscale > 1:
            cases = downscaled_copy(cases, a.downscale, out / f"{name}_input_x{a.downscale}",
                                    nearest=name == "inpaint")
        t0 = time.time()
        records = run_set(name, cases, out, a.noise, a.extra.split())
        rows = measure(name, cases, out, records)
        md = table(name, rows)
        (out / f"{name}.md").write_text(md)
        (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
        print(md, flush=True)
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)
        if a.figures:
            contact_sheet(name, cases, records, Path(a.figures) / f"real_{name}.jpg")
            if name == "deblur":
                residual_plot(rows, Path(a.figures) / "real_deblur_residual.png")
        summary[name] = rows
    return 0


if __name__ == "__main__":
    sys.exit(main())
