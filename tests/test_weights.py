"""Weight registry: cache, sha256 checks, download over HTTP (a local server), clear errors."""
import functools
import hashlib
import json
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

import dynpnp_jax as dp
from dynpnp_jax import weights
from dynpnp_jax.zoo import DnCNN


def _tiny_file(tmp_path: Path) -> Path:
    """A small 'upstream' file: a DnCNN state dict saved as .npz (a stand-in format)."""
    rng = np.random.RandomState(0)
    arrays = {}
    for i, (cin, cout) in enumerate([(1, 4), (4, 4), (4, 1)]):
        arrays[f"conv{i}.kernel"] = rng.normal(0, 0.1, (3, 3, cin, cout)).astype(np.float32)
        arrays[f"conv{i}.bias"] = np.zeros(cout, np.float32)
    path = tmp_path / "tiny.npz"
    np.savez(path, **arrays)
    return path


def _convert(files):
    data = np.load(next(iter(files.values())))
    params = {}
    for key in data.files:
        layer, what = key.split(".")
        params.setdefault(layer, {})[what] = data[key]
    return {"params": params}


_TINY = DnCNN(depth=3, channels=1, features=4)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNPNP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DYNPNP_UPSTREAM", str(tmp_path / "upstream"))
    return tmp_path


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _register(url, sha, name="tiny-test"):
    spec = weights.WeightSpec(name=name, files=(weights.UpstreamFile("tiny/tiny.npz", sha, url),),
                              convert=_convert, module=_TINY, kind="residual", channels=1)
    weights.REGISTRY[name] = spec
    return spec


@pytest.fixture(autouse=True)
def _cleanup_registry():
    yield
    weights.REGISTRY.pop("tiny-test", None)


def test_download_convert_cache(isolated, server):
    root, base = server
    src = _tiny_file(isolated)
    (root / "tiny.npz").write_bytes(src.read_bytes())
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    _register(f"{base}/tiny.npz", sha)
    net = dp.load_network("tiny-test")
    np.testing.assert_array_equal(net.variables["params"]["conv0"]["kernel"],
                                  np.load(src)["conv0.kernel"])
    assert (isolated / "cache" / "upstream" / "tiny" / "tiny.npz").is_file()
    # second load: from the converted cache, even with the server gone and upstream deleted
    (root / "tiny.npz").unlink()
    (isolated / "cache" / "upstream" / "tiny" / "tiny.npz").unlink()
    net2 = dp.load_network("tiny-test")
    np.testing.assert_array_equal(net2.variables["params"]["conv1"]["kernel"],
                                  net.variables["params"]["conv1"]["kernel"])


def test_download_with_wrong_hash(isolated, server):
    root, base = server
    src = _tiny_file(isolated)
    (root / "tiny.npz").write_bytes(src.read_bytes())
    _register(f"{base}/tiny.npz", "0" * 64)
    with pytest.raises(weights.WeightsError, match="sha256"):
        dp.load_network("tiny-test")
    assert not list((isolated / "cache" / "upstream").rglob("*.npz"))


def test_offline_error_says_where_to_get_it(isolated):
    _register("http://127.0.0.1:9/tiny.npz", "0" * 64)
    with pytest.raises(weights.WeightsError, match="could not download.*path="):
        dp.load_network("tiny-test")


def test_corrupt_local_file(isolated):
    src = _tiny_file(isolated)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    _register("http://127.0.0.1:9/tiny.npz", sha)
    up = isolated / "upstream" / "tiny"
    up.mkdir(parents=True)
    (up / "tiny.npz").write_bytes(src.read_bytes()[:-10])  # truncated
    with pytest.raises(weights.WeightsError, match="corrupt"):
        dp.load_network("tiny-test")


def test_user_path_is_taken_as_own_weights(isolated):
    src = _tiny_file(isolated)
    _register("http://127.0.0.1:9/tiny.npz", "0" * 64)
    with pytest.warns(UserWarning, match="not its content"):  # the release's name, not its hash
        net = dp.load_network("tiny-test", path=src)
    assert net.variables["params"]["conv2"]["kernel"].shape == (3, 3, 4, 1)
    with pytest.raises(weights.WeightsError, match="does not exist"):
        dp.load_network("tiny-test", path=isolated / "nope.npz")


def test_wrong_file_for_network(isolated, shared_upstream):
    with pytest.raises(weights.WeightsError, match="could not convert"):
        dp.load_network("dncnn-s25", path=shared_upstream / "dncnn" / "kair_dncnn_25.pth")


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown network name 'dncnn-s99'.*dncnn-s25"):
        dp.load_network("dncnn-s99")


def test_unknown_hash_is_accepted_with_warning(isolated):
    src = _tiny_file(isolated)
    _register("http://127.0.0.1:9/tiny.npz", weights.UNKNOWN)
    up = isolated / "upstream" / "tiny"
    up.mkdir(parents=True)
    (up / "tiny.npz").write_bytes(src.read_bytes())
    with pytest.warns(UserWarning, match="no recorded sha256"):
        net = dp.load_network("tiny-test")
    assert net.variables["params"]["conv0"]["kernel"].shape == (3, 3, 1, 4)
    key = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    assert (isolated / "cache" / "weights" / f"tiny-test-{key}").is_dir()


def test_user_file_with_the_release_name_but_not_its_hash_warns(isolated):
    """A file named as the release (and of its format) whose content differs: used as the
    user's own weights, with a warning naming both hashes."""
    src = _tiny_file(isolated)
    got = hashlib.sha256(src.read_bytes()).hexdigest()
    _register("http://127.0.0.1:9/tiny.npz", "ab" * 32)
    with pytest.warns(UserWarning, match=f"name and format of the released file of 'tiny-test'.*sha256 {got}, the "
                                         f"release's {'ab' * 32}"):
        net = dp.load_network("tiny-test", path=src)
    assert net.variables["params"]["conv0"]["kernel"].shape == (3, 3, 1, 4)
    other = isolated / "mine.npz"  # another name: the user's own, said nothing
    other.write_bytes(src.read_bytes())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dp.load_network("tiny-test", path=other)


@pytest.mark.parametrize("bad", [5, ["a.mat"], 2.5])
def test_path_of_the_wrong_type(bad):
    with pytest.raises(TypeError, match=r"path: expected the upstream weight file or folder as "
                                        r"a str or pathlib.Path .*Fix: e.g. path="):
        dp.load_network("dncnn-s25", path=bad)


@pytest.mark.parametrize("recorded", [True, False], ids=["hashed-entry", "older-entry"])
def test_truncated_cache_file_is_reconverted_with_one_line(isolated, capfd, recorded):
    src = _tiny_file(isolated)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    _register("http://127.0.0.1:9/tiny.npz", sha)
    up = isolated / "upstream" / "tiny"
    up.mkdir(parents=True)
    (up / "tiny.npz").write_bytes(src.read_bytes())
    first = dp.load_network("tiny-test")
    (entry,) = (isolated / "cache" / "weights").iterdir()
    meta = json.loads((entry / "meta.json").read_text())
    assert set(meta["files_sha256"]) and all(len(h) == 64 for h in meta["files_sha256"].values())
    if not recorded:  # as written before entries recorded their files' hashes
        del meta["files_sha256"]
        (entry / "meta.json").write_text(json.dumps(meta))
    biggest = max((p for p in (entry / "variables").rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[:20])
    capfd.readouterr()
    again = dp.load_network("tiny-test")
    err = capfd.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "the converted weights of 'tiny-test'" in err and "converting them again" in err
    np.testing.assert_array_equal(again.variables["params"]["conv0"]["kernel"],
                                  first.variables["params"]["conv0"]["kernel"])
    assert "files_sha256" in json.loads((entry / "meta.json").read_text())
