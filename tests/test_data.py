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
    with pytest.raises(ValueError, match=r"valid names: \['set12', 'bsd68', 'gopro', 'folder'\]"):
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
    assert data.DATASETS == ("set12", "bsd68", "gopro", "folder")
