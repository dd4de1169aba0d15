"""TFDS builders (no TensorFlow) and load_dataset: shared test sets, folders, errors, caching."""
import time

import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from dynpnp_jax import data
from dynpnp_jax.data import sources


@pytest.fixture(scope="module", autouse=True)
def tmp_cache(tmp_path_factory):
    """Prepared TFDS data and downloads go to a fresh cache, not the user's."""
    cache = tmp_path_factory.mktemp("dynpnp_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DYNPNP_CACHE", str(cache))
        yield cache


def _timed_load(name, **kw):
    t0 = time.perf_counter()
    out = data.load_dataset(name, **kw)
    print(f"\nload_dataset({name!r}): {time.perf_counter() - t0:.2f} s (prepare + read)")
    return out


def test_set12(tmp_cache):
    root = require_shared("data", "set12").parent
    ds = _timed_load("set12", data_dir=root)
    assert [ex["name"] for ex in ds] == [f"{i:02d}" for i in range(1, 13)]
    assert {ex["image"].shape for ex in ds} == {(256, 256, 1), (512, 512, 1)}
    assert all(ex["image"].dtype == np.uint8 and set(ex) == {"image", "name"} for ex in ds)
    np.testing.assert_array_equal(ds[7]["image"][..., 0],
                                  np.asarray(Image.open(root / "set12" / "08.png")))
    assert list((tmp_cache / "tfds" / "set12").glob("src_*/1.0.0/*.array_record*"))
    again = data.load_dataset("set12", data_dir=root / "set12", limit=3)  # the folder itself
    assert [ex["name"] for ex in again] == ["01", "02", "03"]


def test_set12_default_location(monkeypatch):
    require_shared("data", "set12")
    monkeypatch.delenv("DYNPNP_DATA", raising=False)
    ds = data.load_dataset("set12", limit=2)  # resolves shared/data by itself
    assert [ex["name"] for ex in ds] == ["01", "02"]


def test_bsd68():
    root = require_shared("data", "bsd68").parent
    ds = _timed_load("bsd68", data_dir=root)
    assert len(ds) == 68 and ds[0]["name"] == "test001" and ds[-1]["name"] == "test068"
    assert {ex["image"].shape for ex in ds} == {(481, 321, 1), (321, 481, 1)}


@pytest.mark.slow  # prepares twenty 1280x720 frames
def test_gopro():
    root = require_shared("data", "gopro").parent
    ds = _timed_load("gopro", data_dir=root)
    assert [ex["name"] for ex in ds] == [f"{i:06d}" for i in range(1, 21)]
    assert all(ex["blur"].shape == (720, 1280, 3) and ex["blur"].dtype == np.uint8 for ex in ds)
    assert [ex["name"] for ex in ds if ex["has_sharp"]] == ["000001"]
    assert ds[0]["sharp"].shape == (720, 1280, 3)
    assert all(ex["sharp"].shape == (0, 0, 3) for ex in ds[1:])  # placeholder, no fake truth
    np.testing.assert_array_equal(ds[0]["sharp"],
                                  np.asarray(Image.open(root / "gopro" / "sharp" / "000001.png")))


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_folder_of_pngs(tmp_path):
    rng = np.random.default_rng(0)
    gray, rgb = rng.integers(0, 256, (20, 30), np.uint8), rng.integers(0, 256, (12, 16, 3), np.uint8)
    _write(tmp_path / "b.png", rgb)
    _write(tmp_path / "a.png", gray)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = data.load_dataset("folder", data_dir=tmp_path)
    assert [ex["name"] for ex in ds] == ["a", "b"]
    np.testing.assert_array_equal(ds[0]["image"], gray[..., None])
    np.testing.assert_array_equal(ds[1]["image"], rgb)
    # a changed file means a new build, never the stale cache
    first_dir = data.get_builder("folder", data_dir=tmp_path).data_dir
    _write(tmp_path / "a.png", 255 - gray[:10])
    assert data.get_builder("folder", data_dir=tmp_path).data_dir != first_dir
    np.testing.assert_array_equal(data.load_dataset("folder", data_dir=tmp_path)[0]["image"],
                                  255 - gray[:10, :, None])


def test_folder_of_pairs(tmp_path):
    rng = np.random.default_rng(1)
    imgs = {n: rng.integers(0, 256, (8, 10, 3), np.uint8) for n in ("x1", "x2", "s1")}
    _write(tmp_path / "blur" / "f1.png", imgs["x1"])
    _write(tmp_path / "blur" / "f2.png", imgs["x2"])
    _write(tmp_path / "sharp" / "f1.png", imgs["s1"])
    ds = data.load_dataset("folder", data_dir=tmp_path)
    assert [(ex["name"], ex["has_sharp"]) for ex in ds] == [("f1", True), ("f2", False)]
    np.testing.assert_array_equal(ds[0]["blur"], imgs["x1"])
    np.testing.assert_array_equal(ds[0]["sharp"], imgs["s1"])
    assert ds[1]["sharp"].shape == (0, 0, 3) and "image" not in ds[0]


def test_download_when_not_found(tmp_path, tmp_cache, monkeypatch):
    shared = require_shared("data", "set12")
    monkeypatch.setenv("DYNPNP_DATA", str(tmp_path))  # holds no set12: falls back to download
    urls = []

    def fake_fetch(url):  # the files the DnCNN URLs point at
        urls.append(url)
        return (shared / url.rsplit("/", 1)[1]).read_bytes()

    monkeypatch.setattr(sources, "_fetch_url", fake_fetch)
    ds = data.load_dataset("set12", limit=1)
    assert ds[0]["name"] == "01" and len(urls) == 12
    assert urls[0] == "https://raw.githubusercontent.com/cszn/DnCNN/master/testsets/Set12/01.png"
    assert (tmp_cache / "downloads" / "set12" / "12.png").is_file()

    monkeypatch.setattr(sources, "_fetch_url", lambda url: b"corrupt")
    with pytest.raises(ValueError, match="SHA-256"):
        sources.download_testset("bsd68")
    assert not (tmp_cache / "downloads" / "bsd68").exists()


def test_errors(tmp_path):
    with pytest.raises(ValueError, match=r"valid names: \['set12', .*'folder'\]"):
        data.load_dataset("set14")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*holds no image files"):
        data.load_dataset("folder", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        data.load_dataset("folder", data_dir=tmp_path / "missing")
    (tmp_path / "blur").mkdir()
    with pytest.raises(FileNotFoundError, match="blur"):
        data.load_dataset("folder", data_dir=tmp_path)
    with pytest.raises(ValueError, match="`data_dir` is required"):
        data.load_dataset("folder")
    with pytest.raises(FileNotFoundError, match=f"data_dir={tmp_path}"):
        data.load_dataset("set12", data_dir=tmp_path)  # explicit: no silent download
    with pytest.raises(FileNotFoundError, match="GOPRO_Large.*seungjunnah.github.io"):
        data.load_dataset("gopro", data_dir=tmp_path)
    with pytest.raises(ValueError, match="limit"):
        data.load_dataset("set12", limit=0)


def test_every_listed_dataset_is_implemented(tmp_path):
    """Each name the error messages offer resolves to a builder (an empty folder gives a
    FileNotFoundError naming it, never 'unknown dataset')."""
    for name in data.DATASETS:
        assert name in data.BUILDERS and name in str(data.builders.get_builder.__doc__) + name
        with pytest.raises(FileNotFoundError, match=str(tmp_path)):
            data.resolve_source(name, tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        data.resolve_source("set14", tmp_path)


# ------------------------------------------------------------------------------ file formats
def _png16_colour(path, arr, filters=(0, 1, 2, 3, 4)):
    """A 16-bit RGB PNG written by hand (Pillow cannot), each row with the next filter type."""
    import struct
    import zlib

    h, w, _ = arr.shape
    raw = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, w * 6).astype(np.int32)
    rows = []
    for r in range(h):
        ftype = filters[r % len(filters)]
        line = raw[r]
        up = raw[r - 1] if r else np.zeros_like(line)
        left = np.concatenate([np.zeros(6, np.int32), line[:-6]])
        upleft = np.concatenate([np.zeros(6, np.int32), up[:-6]])
        if ftype == 0:
            pred = 0
        elif ftype == 1:
            pred = left
        elif ftype == 2:
            pred = up
        elif ftype == 3:
            pred = (left + up) // 2
        else:
            p = left + up - upleft
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        rows.append(bytes([ftype]) + ((line - pred) & 255).astype(np.uint8).tobytes())

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def _to8(v16):
    return np.uint8(np.round(v16.astype(np.float64) * 255 / 65535))


def test_read_image_formats_and_bit_depths(tmp_path):
    rng = np.random.default_rng(5)
    g8 = rng.integers(0, 256, (9, 13), np.uint8)
    c8 = rng.integers(0, 256, (9, 13, 3), np.uint8)
    g16 = rng.integers(0, 65536, (9, 13), np.uint16)
    c16 = rng.integers(0, 65536, (9, 13, 3), np.uint16)
    for ext in ("png", "bmp", "tif"):  # lossless 8-bit
        Image.fromarray(g8).save(tmp_path / f"g8.{ext}")
        Image.fromarray(c8).save(tmp_path / f"c8.{ext}")
        np.testing.assert_array_equal(sources.read_image(tmp_path / f"g8.{ext}"), g8[..., None])
        np.testing.assert_array_equal(sources.read_image(tmp_path / f"c8.{ext}"), c8)
    smooth = np.stack([*np.meshgrid(np.arange(13) * 19, np.arange(9) * 28), np.full((9, 13), 90)],
                      -1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "c8.jpg", quality=100, subsampling=0)
    jpg = sources.read_image(tmp_path / "c8.jpg")
    assert jpg.shape == smooth.shape and np.abs(jpg.astype(int) - smooth).max() <= 3
    # 16 bit: v / 65535 to the nearest 8-bit level (Pillow's convert('L') would clip to 255)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    Image.fromarray(g16).save(tmp_path / "g16.tif")
    for ext in ("png", "tif"):
        got = sources.read_image(tmp_path / f"g16.{ext}")
        np.testing.assert_array_equal(got, _to8(g16)[..., None])
    assert np.asarray(Image.open(tmp_path / "g16.png").convert("L")).max() == 255  # the trap
    _png16_colour(tmp_path / "c16.png", c16)
    np.testing.assert_array_equal(sources.read_image(tmp_path / "c16.png"), _to8(c16))
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "c16.png")), _to8(c16))
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "c16.tif", c16)
    np.testing.assert_array_equal(sources.read_image(tmp_path / "c16.tif"), _to8(c16))
    # gray networks: BT.601 luma as PIL 'L'; gray to colour: repeated
    gray = sources.read_image(tmp_path / "c8.png", channels=1)
    np.testing.assert_array_equal(gray[..., 0], np.asarray(Image.fromarray(c8).convert("L")))
    r, g, b = (c8[..., i].astype(float) for i in range(3))
    assert np.abs(gray[..., 0] - (0.299 * r + 0.587 * g + 0.114 * b)).max() <= 0.5 + 1e-6
    np.testing.assert_array_equal(sources.read_image(tmp_path / "g8.png", channels=3),
                                  np.repeat(g8[..., None], 3, axis=-1))


def test_folder_of_mixed_formats_and_pairs(tmp_path):
    rng = np.random.default_rng(6)
    imgs = [rng.integers(0, 256, (8, 10, 3), np.uint8) for _ in range(3)]
    _write(tmp_path / "clean" / "a.bmp", imgs[0])
    _write(tmp_path / "clean" / "b.tif", imgs[1])
    ds = data.load_dataset("folder", data_dir=tmp_path / "clean")
    assert [ex["name"] for ex in ds] == ["a", "b"]
    np.testing.assert_array_equal(ds[1]["image"], imgs[1])
    _write(tmp_path / "pairs" / "blur" / "f1.bmp", imgs[0])
    _write(tmp_path / "pairs" / "sharp" / "f1.png", imgs[2])  # same name, other suffix
    ds = data.load_dataset("folder", data_dir=tmp_path / "pairs")
    assert ds[0]["has_sharp"]
    np.testing.assert_array_equal(ds[0]["sharp"], imgs[2])
    _write(tmp_path / "clean" / "a.png", imgs[2])
    with pytest.raises(ValueError, match="a.bmp and a.png would both be image 'a'"):
        data.load_dataset("folder", data_dir=tmp_path / "clean")


def test_unreadable_file_is_named(tmp_path):
    rng = np.random.default_rng(7)
    _write(tmp_path / "a.png", rng.integers(0, 256, (32, 32), np.uint8))
    _write(tmp_path / "b.png", rng.integers(0, 256, (32, 32), np.uint8))
    whole = (tmp_path / "b.png").read_bytes()
    (tmp_path / "b.png").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(data.ImageReadError, match=f"cannot read image {tmp_path / 'b.png'}"):
        data.load_dataset("folder", data_dir=tmp_path)
    (tmp_path / "b.png").write_bytes(b"not an image at all")
    with pytest.raises(data.ImageReadError, match="b.png"):
        data.load_dataset("folder", data_dir=tmp_path)


def test_reference_status(tmp_path):
    """Published numbers are only printed beside the published set itself."""
    shared = require_shared("data", "set12")
    ok, why = data.reference_status(data.resolve_source("set12", shared))
    assert ok and "SHA-256 verified" in why
    few = tmp_path / "few"
    few.mkdir()
    for name in ("01.png", "02.png"):
        (few / name).write_bytes((shared / name).read_bytes())
    ok, why = data.reference_status(data.resolve_source("set12", few))
    assert not ok and "custom data: 2 file(s)" in why
    fake = tmp_path / "fake"
    fake.mkdir()
    for i in range(1, 13):  # the right names, other pictures
        _write(fake / f"{i:02d}.png", np.full((16, 16), i, np.uint8))
    ok, why = data.reference_status(data.resolve_source("set12", fake))
    assert not ok and "not its contents" in why
    ok, why = data.reference_status(data.resolve_source("folder", shared))
    assert not ok and "custom data" in why
    gopro = require_shared("data", "gopro")
    ok, why = data.reference_status(data.resolve_source("gopro", gopro.parent))
    assert ok and "GOPR0384_11_00" in why


@pytest.mark.parametrize("name,count,shape", [("set3g", 3, (256, 256, 1)),
                                              ("set3c", 3, (256, 256, 3)),
                                              ("set5", 5, None), ("cbsd68", 68, None)])
def test_dpir_test_sets(name, count, shape):
    root = require_shared("data", name).parent
    source = data.resolve_source(name, root)
    assert len(source.items) == count
    ok, why = data.reference_status(source)
    assert ok and "SHA-256 verified" in why
    if shape:
        ds = data.load_dataset(name, data_dir=root, limit=1)
        assert ds[0]["image"].shape == shape and ds[0]["image"].dtype == np.uint8


def test_replaced_file_of_same_size_and_mtime_is_not_read_stale(tmp_path, monkeypatch):
    """The prepared data is keyed by the files' content: an image replaced by another of the
    same size and modification time (cp -p, touch -r) is prepared anew, not read stale."""
    import os

    monkeypatch.setenv("DYNPNP_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    first, second = (rng.integers(0, 256, (16, 20), np.uint8) for _ in range(2))
    folder = tmp_path / "imgs"
    _write(folder / "a.bmp", first)  # BMP: the same size for the same shape
    st = (folder / "a.bmp").stat()
    np.testing.assert_array_equal(data.load_dataset("folder", data_dir=folder)[0]["image"][..., 0],
                                  first)
    _write(folder / "a.bmp", second)
    os.utime(folder / "a.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    now = (folder / "a.bmp").stat()
    assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    np.testing.assert_array_equal(data.load_dataset("folder", data_dir=folder)[0]["image"][..., 0],
                                  second)
    # the remembered hashes are reused for unchanged files, never for a changed one
    src = data.resolve_source("folder", str(folder))
    assert src.fingerprint == data.resolve_source("folder", str(folder)).fingerprint
