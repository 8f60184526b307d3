"""After every conversion pass: every parameter in the layer graph is still finite.

Why: a pass computes new weights from old ones (σ = sqrt(var + ε), W·λ_prev/λ, θ·W); one NaN or inf that slips
in (a BatchNorm with var + ε ≤ 0, a λ of 1e-45) would otherwise become int64-min weights at Quantize and a
network that runs but computes nothing the user trained. One line names the pass, the node and the field.
"""

from __future__ import annotations

import numpy as np

from qcfs.errors import ModelFileError
from qcfs.toolchain.graph import Graph, describe_node

_SCALAR_FIELDS = ("lam", "threshold", "v_init", "carries", "scale", "eps")


def _finite(value: object) -> bool:
    arr = np.asarray(value)
    return arr.dtype.kind not in "fc" or bool(np.all(np.isfinite(arr)))


def check_finite(graph: Graph, after: str) -> None:
    """ModelFileError naming the first non-finite parameter (after pass `after`)."""
    for node in graph:
        for key, value in node.attrs.items():
            if key == "synapses":
                for j, syn in enumerate(value):
                    if not _finite(syn.weight):
                        raise ModelFileError(f"{describe_node(node)}: synapse {j} weight is not finite after "
                                             f"{after} (NaN/inf); check the model's parameters")
            elif (isinstance(value, np.ndarray) or key in _SCALAR_FIELDS) and not _finite(value):
                raise ModelFileError(f"{describe_node(node)}: {key} is not finite after {after} (NaN/inf); "
                                     "check the model's parameters (e.g. BatchNorm variance)")
