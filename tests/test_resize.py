"""imresize refuses sizes whose dense resize matrices would not fit in memory (one clear error,
not a MemoryError or a machine brought down), and still handles the extreme scales that fit."""
import numpy as np
import pytest

from dynpnp_jax.resize import MAX_MATRIX, imresize


@pytest.mark.parametrize("kw,match", [
    ({"scale": 1e6}, r"^scale: resizing axis 0 from 16 to 16000000 pixels .* expected at most "
                     r"MAX_MATRIX = 2\^26 .*fix: resize crops"),
    ({"scale": 1e-8}, r"^scale: resizing axis 0 from 16 to 1 pixels \(scale 1e-08\) needs a 1 x "
                      r"400000002 matrix"),
    ({"output_shape": (10 ** 7, 4)}, r"^output_shape: resizing axis 0 from 16 to 10000000 pixels"),
])
def test_imresize_refuses_matrices_that_do_not_fit(kw, match):
    with pytest.raises(ValueError, match=match):
        imresize(np.zeros((16, 16), np.float32), **kw)


def test_imresize_extreme_scales_that_fit():
    x = np.full((16, 12), 0.25, np.float32)
    assert imresize(x, 1e-5).shape == (1, 1)  # a 4e5-tap antialiasing kernel
    np.testing.assert_allclose(imresize(x, 1e-5), 0.25, atol=1e-6)  # a constant stays constant
    # just above the bound is refused, on the axis that crosses it
    with pytest.raises(ValueError, match="resizing axis 1 from 16 to"):
        imresize(np.zeros((1, 16), np.float32), output_shape=(1, MAX_MATRIX // 16 + 1))
