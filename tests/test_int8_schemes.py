"""Which layers the INT8 quantizer puts in INT8: ``full`` for CNNs, ``transformer`` for a residual stream."""

from __future__ import annotations

import pytest
import torch

from edgekd.inputs import image_spec
from edgekd.models import create_model
from edgekd.quantize import prepare
from edgekd.records import InputSpec, TokenizerPreprocess
from torchao.quantization.pt2e import FakeQuantize

LENGTH = 12
aten = torch.ops.aten


def token_spec() -> InputSpec:
    return InputSpec(name="input_ids", dtype="int64", shape=["batch", "sequence"], max_sizes={"sequence": LENGTH},
                     preprocess=TokenizerPreprocess(tokenizer="test", sha256="0" * 64, max_length=LENGTH, pad_id=0,
                                                    vocab_size=100))


def bert_with_outliers() -> torch.nn.Module:
    """A 2-layer BERT whose residual stream has a few large channels, as trained transformers have
    (Bondarenko et al., 2021: the outlier dimensions that break per-tensor INT8 on the residual adds)."""
    torch.manual_seed(0)
    model = create_model("bert", num_classes=3, data_args={"vocab_size": 100, "pad_id": 0, "max_length": LENGTH},
                         layers=2, hidden=32, heads=4, ffn=64)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight[:2] = 40.0  # two outlier channels
        torch.nn.init.normal_(model.classifier.weight, std=0.5)
    return model.eval()


def ids(rows: int, seed: int) -> torch.Tensor:
    """Random ids right-padded to LENGTH (lengths 3..LENGTH), so the attention mask is exercised."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 100, (rows, LENGTH), generator=generator)
    lengths = torch.randint(3, LENGTH + 1, (rows,), generator=generator)
    return x.masked_fill(torch.arange(LENGTH) >= lengths[:, None], 0)


def quantized_inputs(graph: torch.fx.GraphModule) -> dict[str, int]:
    """How many inputs of each op kind come through a fake quantizer."""
    fake = {name for name, module in graph.named_modules() if isinstance(module, FakeQuantize)}
    counts: dict[str, int] = {}
    for node in graph.graph.nodes:
        if node.op != "call_function":
            continue
        for arg in node.args:
            if getattr(arg, "op", None) == "call_module" and arg.target in fake:
                key = node.target.__name__.split(".")[0]
                counts[key] = counts.get(key, 0) + 1
    return counts


def test_auto_picks_transformer_for_layer_norm_models_and_full_for_cnns():
    cnn = create_model("tiny_cnn", num_classes=10, in_channels=1).eval()
    assert prepare(cnn, image_spec((1, 28, 28)), observer="minmax").scheme == "full"
    assert prepare(bert_with_outliers(), token_spec(), observer="minmax").scheme == "transformer"


def test_transformer_scheme_quantizes_linear_inputs_and_leaves_the_residual_stream_float():
    prepared = prepare(bert_with_outliers(), token_spec(), observer="minmax")
    counts = quantized_inputs(prepared.graph)
    linears = 2 * 6 + 1  # q, k, v, attention output, two FFN per layer; the classifier
    assert counts.get("linear") == 2 * linears  # activation and weight of each; the logits stay float
    assert not counts.get("add") and not counts.get("layer_norm") and not counts.get("gelu") and not counts.get("softmax")
    full = quantized_inputs(prepare(bert_with_outliers(), token_spec(), observer="minmax", scheme="full").graph)
    assert full.get("add", 0) > 0 and full.get("layer_norm", 0) > 0  # what the transformer scheme avoids


def test_transformer_scheme_stays_close_to_float_and_closer_than_full_int8():
    # A random tiny model shows the direction only (about 0.04 against 0.05 relative error); on the trained
    # sentiment student the gap is 4 points of accuracy (README, "Text models").
    model = bert_with_outliers()
    calibration, held_out = ids(64, 1), ids(64, 2)
    with torch.no_grad():
        reference = model(held_out)
    errors = {}
    for scheme in ("transformer", "full"):
        prepared = prepare(model, token_spec(), observer="minmax", scheme=scheme)
        prepared.calibrate(calibration)
        prepared.freeze_observers()
        with torch.no_grad():
            out = prepared.eval()(held_out)
        errors[scheme] = ((out - reference).norm() / reference.norm()).item()
    assert errors["transformer"] < 0.05, errors
    assert errors["full"] > errors["transformer"], errors


def test_an_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="transformer"):
        prepare(bert_with_outliers(), token_spec(), observer="minmax", scheme="int4")


def test_sqnr_decides_where_asked_and_is_reported_everywhere():
    from edgekd.parity import compare

    reference = torch.randn(200, 3, generator=torch.Generator().manual_seed(0)).numpy()
    noise = reference * 0.01  # exactly 40 dB below the signal
    parity = compare(reference, reference + noise, step=0.001, min_sqnr_db=35.0, min_top1_agreement=0.98)
    assert parity.ok and abs(parity.sqnr_db - 40.0) < 1e-4  # float32 inputs
    assert parity.max_diff_steps > 3  # a step bound of 3 would have failed this candidate
    assert "SQNR 40.0 dB (required 35 dB)" in parity.describe()
    assert not compare(reference, reference + noise, step=0.001, min_sqnr_db=45.0, min_top1_agreement=0.98).ok
    assert not compare(reference, reference + noise, step=0.001, limit_steps=3, min_top1_agreement=0.98).ok
    assert compare(reference, reference, atol=1e-6, min_top1_agreement=0.98).sqnr_db is None  # identical: no finite ratio
    with pytest.raises(ValueError):
        compare(reference, reference, atol=1e-3, step=0.001, limit_steps=3, min_top1_agreement=0.98)
    with pytest.raises(ValueError):
        compare(reference, reference, min_top1_agreement=0.98)


def test_the_config_floor_on_sqnr_holds_beside_a_precisions_own_bound():
    """compile.min_sqnr_db: {int8: ...} adds an SQNR floor to the step bound (and {fp16: ...} to the atol): both must
    hold, and a failure names the SQNR it missed."""
    from edgekd.config import CompileConfig
    from edgekd.parity import compare

    reference = torch.randn(200, 3, generator=torch.Generator().manual_seed(0)).numpy()
    noisy = reference + reference * 0.01  # 40 dB
    within_steps = dict(step=0.02, limit_steps=3)  # max |diff| about 0.03: inside 3 steps of 0.02
    assert compare(reference, noisy, **within_steps, min_top1_agreement=0.98).ok
    assert compare(reference, noisy, **within_steps, min_sqnr_db=35.0, min_top1_agreement=0.98).ok
    failed = compare(reference, noisy, **within_steps, min_sqnr_db=45.0, min_top1_agreement=0.98)
    assert not failed.ok and "output steps of 0.02 (limit 3), SQNR 40.0 dB (required 45 dB)" in failed.describe()
    assert not compare(reference, noisy, atol=1.0, min_sqnr_db=45.0, min_top1_agreement=0.98).ok  # atol alone would pass
    floors = CompileConfig.model_validate({"min_sqnr_db": {"int8": 30, "fp16": 50}}).min_sqnr_db
    assert floors.model_dump(exclude_none=True) == {"int8": 30.0, "fp16": 50.0}
    with pytest.raises(Exception, match="int4"):
        CompileConfig.model_validate({"min_sqnr_db": {"int4": 30}})


def test_onnx_runtime_gets_uint8_activations_that_compute_the_same_and_fuse_every_linear(tmp_path):
    import numpy as np
    import onnx

    from edgekd import onnx_export
    from edgekd.backends.onnxruntime.backend import as_uint8

    model = bert_with_outliers()
    prepared = prepare(model, token_spec(), observer="minmax")
    prepared.calibrate(ids(64, 1))
    prepared.freeze_observers()
    prepared.eval()
    qdq = onnx_export.export(prepared.converted(fold_quantize=True), token_spec(), tmp_path / "int8.onnx", opset=18,
                             dynamic_batch=False)
    reencoded = as_uint8(qdq, tmp_path / "uint8.onnx")
    x = ids(16, 2).numpy()
    exact = [onnx_export.run_session(onnx_export.session(p, optimization="disable"), x) for p in (qdq, reencoded)]
    np.testing.assert_array_equal(exact[0], exact[1])  # the same dequantized values, bit for bit

    fused = {}
    for name, path in (("int8", qdq), ("uint8", reencoded)):
        optimized = tmp_path / f"{name}.optimized.onnx"
        onnx_export.session(path, optimized_path=optimized)
        fused[name] = sum(n.op_type == "MatMulIntegerToFloat" for n in onnx.load(str(optimized)).graph.node)
    assert fused["uint8"] == 2 * 6, fused  # q, k, v, attention output and both FFN linears of each layer
    assert fused["uint8"] > fused["int8"], fused


def test_uint8_weights_and_activations_compute_the_same_and_keep_every_integer_kernel(tmp_path):
    """What ONNX Runtime gets on x86 CPUs without VNNI (its u8 x s8 kernels saturate there): the CNN's weights and
    activations re-encoded as uint8, bit-exact when run as Q/DQ and still fused into QLinearConv / QGemm."""
    import collections

    import numpy as np
    import onnx

    from edgekd import onnx_export
    from edgekd.backends.onnxruntime.backend import as_uint8

    torch.manual_seed(0)
    spec = image_spec((1, 28, 28))
    prepared = prepare(create_model("tiny_cnn", num_classes=10, in_channels=1).eval(), spec, observer="minmax")
    prepared.calibrate(torch.randn(64, 1, 28, 28) * 2)
    prepared.freeze_observers()
    prepared.eval()
    qdq = onnx_export.export(prepared.converted(fold_quantize=True), spec, tmp_path / "int8.onnx", opset=18,
                             dynamic_batch=False)
    reencoded = as_uint8(qdq, tmp_path / "u8u8.onnx", weights=True)
    xs = [np.random.default_rng(i).standard_normal((1, 1, 28, 28)).astype(np.float32) * 2 for i in range(32)]
    run = lambda path, level: np.concatenate([onnx_export.session(path, optimization=level).run(None, {"input": x})[0]
                                              for x in xs])  # noqa: E731
    reference = run(qdq, "disable")
    np.testing.assert_array_equal(reference, run(reencoded, "disable"))  # the same dequantized values, bit for bit
    optimized = tmp_path / "u8u8.optimized.onnx"
    onnx_export.session(reencoded, optimized_path=optimized)
    ops = collections.Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    assert ops["QLinearConv"] == 3 and ops["QGemm"] + ops["QLinearMatMul"] == 1, ops
    step = float(np.abs(reference).max()) / 127
    assert np.abs(run(reencoded, "all") - reference).max() <= 3 * step  # integer kernels, no saturation


def test_learned_weights_carry_the_int8_grid_into_a_float_model():
    model = bert_with_outliers()
    prepared = prepare(model, token_spec(), observer="minmax")
    prepared.calibrate(ids(64, 1))
    prepared.freeze_observers()
    with torch.no_grad():
        prepared.graph.get_parameter("classifier.weight").add_(0.01)  # as training would move it
    learned = prepared.with_learned_weights(model)
    weight, original = learned.classifier.weight, model.classifier.weight
    assert not torch.equal(weight, original)  # the learned weights, not the FP32 student's
    node = next(n for n in prepared.graph.graph.nodes if n.op == "get_attr" and n.target == "classifier.weight")
    quantizer = next(user.target for user in node.users if user.op == "call_module")
    scale, _ = prepared.learned_qparams()[quantizer]  # the frozen per-channel scales
    steps = weight / torch.from_numpy(scale)[:, None]
    assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() < 127 + 1e-3  # on the INT8 grid
