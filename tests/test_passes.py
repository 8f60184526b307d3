"""Each conversion pass preserves the network function: the IR is evaluated after every pass and compared
with onnxruntime on the original canonical ONNX; plus the algebra (pool/conv composition) on its own."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

import graphs_by_hand as gh
from qcfs.errors import QCFSError, UnsupportedOpError
from qcfs.toolchain.convert import build_pipeline
from qcfs.toolchain.graph import conv_out_len
from qcfs.toolchain.interpret import interpret
from qcfs.toolchain.lift import lift
from qcfs.toolchain.numeric import add_bias, conv2d
from qcfs.toolchain.passes.linear import compose_conv, conv_as_dense, dense_as_conv

NETS = sorted(gh.ZOO)


@pytest.fixture(scope="module", params=NETS)
def net_case(request: pytest.FixtureRequest):
    model = gh.ZOO[request.param]()
    imgs = gh.images(model, 16)
    x = gh.normalized(model, imgs)
    return request.param, model, x, gh.run_ort(model, x)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(b).max())))


def test_every_float_pass_preserves_the_function(net_case) -> None:
    name, model, x, ref = net_case
    graph = lift(model)
    _close(interpret(graph, x), ref)
    for p in build_pipeline("float"):
        p.run(graph)
        _close(interpret(graph, x), ref)
    assert set(graph.ops()) == {"input", "neuron"}, name


def test_folding_leaves_only_populations_and_linear_maps(net_case) -> None:
    _, model, _, _ = net_case
    graph = lift(model)
    for p in build_pipeline("float")[:5]:  # up to ComposeLinear
        p.run(graph)
    assert set(graph.ops()) <= {"input", "conv", "dense", "flatten", "qcfs", "add"}
    for node in graph:  # every linear map reads a population directly: one synapse each
        if node.op in ("conv", "dense"):
            src = graph[node.inputs[0]]
            while src.op == "flatten":
                src = graph[src.inputs[0]]
            assert src.op in ("input", "qcfs"), node.name


# --- pooling folded into the next synapse ----------------------------------------------------------------
def _depthwise_pool(c: int, k: int, s: int, pads=(0, 0, 0, 0)) -> dict:
    return dict(weight=np.full((c, 1, k, k), 1.0 / (k * k)), bias=np.zeros(c), stride=(s, s), pads=pads, groups=c)


def test_avgpool2_then_conv3_pad1_is_one_6x6_stride2_conv_pad2() -> None:
    rng = np.random.default_rng(0)
    w2 = rng.normal(size=(5, 4, 3, 3))
    conv = dict(weight=w2, bias=rng.normal(size=5), stride=(1, 1), pads=(1, 1, 1, 1), groups=1)
    out = compose_conv(_depthwise_pool(4, 2, 2), (4, 8, 8), conv)
    assert not isinstance(out, str), out
    assert out["stride"] == (2, 2) and out["pads"] == (2, 2, 2, 2) and out["groups"] == 1
    np.testing.assert_allclose(out["weight"], np.repeat(np.repeat(w2, 2, axis=2), 2, axis=3) / 4)
    # numerically, against onnxruntime running AveragePool -> Conv
    b = gh.Builder(shape=(4, 8, 8), normalize=False)
    y = b.conv(b.avgpool("input", 2), 5, bias=True)
    b.inits[-2] = numpy_helper.from_array(w2.astype(np.float32), b.inits[-2].name)
    b.inits[-1] = numpy_helper.from_array(conv["bias"].astype(np.float32), b.inits[-1].name)
    b.shape[y] = (5 * 4 * 4,)  # the test model's "logits" are the flattened feature map
    model = b.model(b.flatten(y))
    x = rng.normal(size=(3, 4, 8, 8))
    one_conv = add_bias(conv2d(x, out["weight"], out["stride"], out["pads"]), out["bias"])
    np.testing.assert_allclose(one_conv.reshape(3, -1), gh.run_ort(model, x), rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(n0=st.integers(3, 9), k1=st.integers(1, 3), s1=st.integers(1, 3), p1=st.tuples(st.integers(0, 1), st.integers(0, 1)),
       k2=st.integers(1, 3), s2=st.integers(1, 2), p2=st.tuples(st.integers(0, 1), st.integers(0, 1)),
       groups=st.sampled_from([1, 2]), bias1=st.booleans(), seed=st.integers(0, 99))
def test_composition_of_any_two_convs_is_exact_or_refused(n0, k1, s1, p1, k2, s2, p2, groups, bias1, seed) -> None:
    n1 = conv_out_len(n0, k1, s1, p1[0], p1[1])
    assume(n1 >= 1 and conv_out_len(n1, k2, s2, p2[0], p2[1]) >= 1)
    rng = np.random.default_rng(seed)
    c1 = dict(weight=rng.normal(size=(4, 2, k1, k1)), bias=rng.normal(size=4) if bias1 else np.zeros(4),
              stride=(s1, s1), pads=(p1[0],) * 2 + (p1[1],) * 2, groups=1)
    c2 = dict(weight=rng.normal(size=(4, 4 // groups, k2, k2)), bias=rng.normal(size=4), stride=(s2, s2),
              pads=(p2[0],) * 2 + (p2[1],) * 2, groups=groups)
    x = rng.normal(size=(2, 2, n0, n0))
    two_step = add_bias(conv2d(add_bias(conv2d(x, c1["weight"], c1["stride"], c1["pads"]), c1["bias"]),
                               c2["weight"], c2["stride"], c2["pads"], groups), c2["bias"])
    out = compose_conv(c1, (2, n0, n0), c2)
    if isinstance(out, str):  # refused: then the unchecked composition really computes something else
        naive = compose_conv(c1, (2, n0, n0), c2, check=False)
        if isinstance(naive, str):
            assert "length" in naive
            return
        one = add_bias(conv2d(x, naive["weight"], naive["stride"], naive["pads"], naive["groups"]), naive["bias"])
        assert one.shape != two_step.shape or not np.allclose(one, two_step), out
        return
    one = add_bias(conv2d(x, out["weight"], out["stride"], out["pads"], out["groups"]), out["bias"])
    np.testing.assert_allclose(one, two_step, rtol=1e-9, atol=1e-9)


def test_dense_over_a_conv_becomes_one_dense() -> None:
    rng = np.random.default_rng(3)
    pool = _depthwise_pool(3, 2, 2)
    d = dict(weight=rng.normal(size=(7, 3 * 3 * 3)), bias=rng.normal(size=7))
    x = rng.normal(size=(2, 3, 7, 7))  # 7 -> 3: the last row/column is never pooled
    expected = conv2d(x, pool["weight"], pool["stride"], groups=3).reshape(2, -1) @ d["weight"].T + d["bias"]
    composed = compose_conv(pool, (3, 7, 7), dense_as_conv(d, (3, 3, 3)))
    dense = conv_as_dense(composed, (3, 7, 7))
    np.testing.assert_allclose(x.reshape(2, -1) @ dense["weight"].T + dense["bias"], expected, rtol=1e-12)
    assert not dense["weight"].reshape(7, 3, 7, 7)[:, :, 6, :].any()  # the unpooled row has no weight


def test_pooling_of_an_odd_map_before_a_padded_conv_is_refused_naming_both_nodes() -> None:
    b = gh.Builder(shape=(3, 7, 7))
    x = b.avgpool(b.qcfs(b.conv("input", 4)), 2, name="pool_odd")
    model = b.model(b.gemm(b.flatten(b.qcfs(b.conv(x, 4, name="conv_after"))), 3))
    with pytest.raises(UnsupportedOpError, match=r"pool_odd.*AveragePool.*conv_after.*Conv"):
        build_and_run(model)


def test_padded_pool_without_pad_counting_is_refused() -> None:
    b = gh.Builder()
    x = b.avgpool(b.qcfs(b.conv("input", 4)), 3, stride=1, pad=1, include_pad=0, name="pool_pad")
    model = b.model(b.gemm(b.flatten(x), 3))
    with pytest.raises(UnsupportedOpError, match="pool_pad.*count_include_pad"):
        build_and_run(model)


def test_padded_pool_counting_pads_then_1x1_conv_and_bn_after_qcfs_match_onnxruntime() -> None:
    b = gh.Builder()
    x = b.avgpool(b.qcfs(b.conv("input", 4)), 3, stride=1, pad=1, include_pad=1)
    x = b.qcfs(b.conv(x, 6, k=1, pad=0, bias=True))
    x = b.bn(x)  # BN after a QCFS: a per-channel affine map merged into the Gemm after it
    model = gh.calibrate_lambdas(b.model(b.gemm(b.flatten(x), 3)))
    x = gh.normalized(model, gh.images(model, 8))
    graph = build_and_run(model)
    _close(interpret(graph, x), gh.run_ort(model, x))


def build_and_run(model: onnx.ModelProto):
    graph = lift(model)
    for p in build_pipeline("float"):
        p.run(graph)
    return graph


# --- λ folding and residual synapses ---------------------------------------------------------------------
def _lams(model: onnx.ModelProto) -> dict[str, float]:
    inits = {t.name: float(numpy_helper.to_array(t)) for t in model.graph.initializer if t.name.startswith("lam")}
    return {n.name: inits[n.input[1]] for n in model.graph.node if n.op_type == "QCFS"}


def test_fold_lambda_scales_each_synapse_by_source_over_target_lambda() -> None:
    model = gh.matmul_mlp()
    graph = lift(model)
    for p in build_pipeline("float")[:6]:
        p.run(graph)
    before = {n.name: [s.weight.copy() for s in n.attrs["synapses"]] for n in graph if n.op == "neuron"}
    build_pipeline("float")[6].run(graph)
    lam = next(iter(_lams(model).values()))
    np.testing.assert_allclose(graph["fc1"].attrs["synapses"][0].weight, before["fc1"][0] / lam)  # input λ = 1
    np.testing.assert_allclose(graph["fc2"].attrs["synapses"][0].weight, before["fc2"][0] * lam)  # readout
    assert graph["fc1"].attrs["threshold"] == 1.0 and graph["fc1"].attrs["v_init"] == 0.5


def test_residual_block_is_one_layer_with_two_synapses_and_a_diagonal_shortcut() -> None:
    model = gh.resnet_block()
    graph = build_and_run(model)
    lam = _lams(model)
    block = graph["layer1.0.conv2"]
    assert [s.source for s in block.attrs["synapses"]] == ["layer1.0.conv1", "stem.0"]
    shortcut = block.attrs["synapses"][1]
    assert shortcut.kind == "conv" and shortcut.weight.shape == (8, 8, 1, 1)
    ratio = lam["/stem/stem.2/QCFS"] / lam["/layer1/layer1.0/act2/QCFS"]
    np.testing.assert_allclose(shortcut.weight[:, :, 0, 0], np.eye(8) * ratio)
    down = graph["layer2.0.conv2"].attrs["synapses"]
    assert [s.source for s in down] == ["layer2.0.conv1", "layer1.0.conv2"]
    assert down[1].weight.shape == (16, 8, 1, 1) and down[1].stride == (2, 2)


# --- refusals ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["MaxPool", "Sigmoid"])
def test_unsupported_ops_name_the_node_and_op(op: str) -> None:
    b = gh.Builder()
    x = b.qcfs(b.conv("input", 4))
    attrs = dict(kernel_shape=[2, 2], strides=[2, 2]) if op == "MaxPool" else {}
    x = b.node(op, [x], (4, 4, 4) if op == "MaxPool" else b.shape[x], name=f"the_{op.lower()}", **attrs)
    model = b.model(b.gemm(b.flatten(x), 3))
    with pytest.raises(UnsupportedOpError, match=rf"the_{op.lower()}.*\({op}\)"):
        lift(model)


@pytest.mark.parametrize("lam", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_lambda_is_a_one_line_error(lam: float) -> None:
    b = gh.Builder()
    model = b.model(b.gemm(b.flatten(b.qcfs(b.conv("input", 4), lam=lam, name="act")), 3))
    with pytest.raises(QCFSError, match="act.*λ") as info:
        lift(model)
    assert "\n" not in str(info.value)


def test_L_below_one_and_mixed_L_are_refused() -> None:
    b = gh.Builder(L=0)
    model = b.model(b.gemm(b.flatten(b.qcfs(b.conv("input", 4), lam=1.0, name="act")), 3))
    with pytest.raises(QCFSError, match="L must be"):
        lift(model)
    b = gh.Builder()
    x = b.qcfs(b.conv("input", 4), lam=1.0)
    b.L = 8
    model = b.model(b.gemm(b.flatten(b.qcfs(b.conv(x, 4), lam=1.0)), 3))
    with pytest.raises(QCFSError, match="share L"):
        build_and_run(model)
