"""Weight registry: cache, sha256 checks, download over HTTP (a local server), clear errors."""
import functools
import hashlib
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
