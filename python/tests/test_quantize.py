"""quantize() over the pipeline, the QuantModel it returns, its exports and the integer Engine."""
import numpy as np
import pytest

import sigmaquant as sq
from conftest import FAST


@pytest.fixture(scope="module")
def uniform_run(lenet_path, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("uniform")
    stages = []
    r = sq.quantize(lenet_path, sq.load_target("size"),
                    method="uniform", data=data, avg_bits=4, out_dir=out,
                    on_stage=stages.append, **FAST)
    return r, out, stages


def test_methods_registry():
    names = sq.methods()
    assert {"sigmaquant", "uniform", "adaptive", "hessian"} <= set(names)
    info = sq.method_info("sigmaquant")
    assert info["name"] == "sigmaquant" and info["trains"] and info["description"]
    with pytest.raises(sq.Error, match="uniform"):  # the message lists the known names
        sq.method_info("no-such-method")


def test_quantize_uniform_log_and_files(uniform_run, lenet):
    r, out, stages = uniform_run
    log = r.log
    assert log["method"] == "uniform"
    assert log["final"]["avg_bits"] <= 4 + 1e-9
    assert 0 <= log["final"]["accuracy"] <= 1 and r.accuracy == log["final"]["accuracy"]
    assert all(b["fits"] for b in log["final"]["budgets"])
    assert [layer["name"] for layer in log["layers"]] == lenet.weight_layers
    assert set(r.bits["layers"]) == set(lenet.weight_layers)
    assert r.model.avg_bits == pytest.approx(log["final"]["avg_bits"])
    assert "uniform" in r.summary()
    assert "done" in stages
    for name in ("bits.json", "model.sqg", "log.json"):
        assert (out / name).exists(), name
    assert sq.load_run_log(out / "log.json") == log


def test_quantized_model_exports_and_engine(uniform_run, data, tmp_path):
    r = uniform_run[0]
    qm = r.model
    qm.save(tmp_path / "q.sqg")
    again = sq.load_quantized(tmp_path / "q.sqg")
    assert again.bits == qm.bits
    qm.export_sqm(tmp_path / "q.sqm", meta={"note": "test"})
    qm.export_c(tmp_path / "c")
    assert (tmp_path / "c" / "model.h").exists()

    engine = sq.Engine(tmp_path / "q.sqm")
    assert engine.input_shape == (1, 28, 28) and engine.num_classes == 10
    assert engine.meta["note"] == "test"
    images = data.test.images
    logits = engine.run(images)
    assert logits.shape == (len(data.test), 10) and logits.dtype == np.float32
    accuracy = float(np.mean(logits.argmax(axis=1) == data.test.labels))
    assert engine.evaluate(data.test) == pytest.approx(accuracy)
    # the integer engine agrees with the simulated quantized model on (nearly) every image
    sim_accuracy, _ = qm.evaluate(data.test)
    assert abs(sim_accuracy - accuracy) <= 0.05
    # one sample at a time gives the same logits as the batch
    np.testing.assert_array_equal(engine.run(images[3:4]), logits[3:4])
    # trace: the same logits, the input's codes first, then one entry per step that writes codes
    traced, steps = engine.trace(images[3])
    np.testing.assert_array_equal(traced, logits[3])
    assert steps[0]["node"] == "input" and steps[0]["step"] == -1
    assert steps[0]["codes"].dtype == np.uint8 and steps[0]["codes"].size == 28 * 28
    assert [s["step"] for s in steps[1:]] == sorted(s["step"] for s in steps[1:])
    assert len(steps) - 1 == sum(1 for line in engine.describe() if "logits" not in line)
    with pytest.raises(sq.Error, match="takes one 1 x 28 x 28 image"):
        engine.trace(images[:2])
    with pytest.raises(sq.Error, match="N x 1 x 28 x 28"):
        engine.run(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(sq.Error, match="missing.sqm"):
        sq.Engine(tmp_path / "missing.sqm")
    # threads: the same logits and accuracy; the weights are held once
    par = sq.Engine(tmp_path / "q.sqm", threads=3)
    assert engine.threads == 1 and par.threads == 3
    np.testing.assert_array_equal(par.run(images), logits)
    assert par.evaluate(data.test) == engine.evaluate(data.test)
    assert par.shared_bytes == engine.shared_bytes > 0 and par.per_thread_bytes > 0
    with pytest.raises(sq.Error, match="at least 1"):
        sq.Engine(tmp_path / "q.sqm", threads=0)
    # profile: the input's quantization, then one entry per step of the plan, in order
    prof = engine.profile(images[:4])
    assert prof[0]["step"] == -1 and prof[0]["node"] == "input"
    assert [p["step"] for p in prof[1:]] == list(range(len(engine.describe())))
    assert all(p["seconds"] >= 0 for p in prof) and sum(p["seconds"] for p in prof) > 0
    assert all(line.startswith(p["label"] + " ") for p, line in zip(prof[1:], engine.describe()))
    with pytest.raises(sq.Error, match="N x 1 x 28 x 28 images"):
        engine.profile(images[0])


def test_cost_of_quantized_model(uniform_run):
    r = uniform_run[0]
    c = sq.cost(r.model, "size")
    assert c["average_wbits"] == pytest.approx(r.model.avg_bits)


def test_quantize_sigmaquant_iterations(lenet, data):
    iterations, messages = [], []
    r = sq.quantize(lenet, "shiftadd", data=data, avg_bits=3.5, on_iteration=iterations.append,
                    on_message=messages.append, **FAST)
    assert r.log["method"] == "sigmaquant"
    assert iterations and all("accuracy" in it and "bits" in it for it in iterations)
    assert iterations[-1] == r.log["iterations"][-1]
    assert messages
    assert r.log["final"]["avg_bits"] <= 3.5 + 1e-9


def test_quantize_errors(lenet, data):
    with pytest.raises(sq.Error, match="no-such-method"):
        sq.quantize(lenet, "size", method="no-such-method", data=data)
    with pytest.raises(sq.Error, match="unknown setting 'final_epoch'"):
        sq.quantize(lenet, "size", data=data, final_epoch=1)
    with pytest.raises(sq.Error, match="max_iterations"):
        sq.quantize(lenet, "size", data=data, max_iterations="many")
    with pytest.raises(sq.Error, match="data"):
        sq.quantize(lenet, "size", data=[1, 2])
    with pytest.raises(sq.Error, match="dnas_penalty 'hinge': expected cost or excess"):
        sq.quantize(lenet, "size", method="dnas", data=data, dnas_penalty="hinge")
    with pytest.raises(sq.Error, match="dnas_tau_end"):
        sq.quantize(lenet, "size", method="dnas", data=data, dnas_tau_end=-1.0)
    with pytest.raises(sq.Error, match="memory_limit '12X': expected a size such as"):
        sq.quantize(lenet, "size", data=data, memory_limit="12X")
    # 1 KiB for the whole process: refused before the search, naming the batch problem
    with pytest.raises(sq.Error, match="QAT: a training step does not fit in memory even at batch 1"):
        sq.quantize(lenet, "size", data=data, avg_bits=4, memory_limit=1024, **FAST)


def test_callback_exception_stops_the_run(lenet, data):
    def boom(_):
        raise ValueError("stop here")

    with pytest.raises(ValueError, match="stop here"):
        sq.quantize(lenet, "size", method="uniform", data=data, avg_bits=4, on_stage=boom, **FAST)


def test_pareto_table_summary_and_refusals(lenet_path, data, tmp_path):
    """pareto() as `sigmaquant pareto`: the points, the summary, and a refused budget listed
    with its reason while the other runs go on."""
    msgs = []
    r = sq.pareto(lenet_path, "size", ["uniform"], [1.5, 4], data=data, seeds=[1],
                  out_dir=tmp_path, bits_set=[2, 4, 8], on_message=msgs.append, **FAST)
    pts = r["pareto"]["points"]
    assert [p["budget"] for p in pts] == ["4 bits"]
    assert r["pareto"]["refused"][0]["budget"] == "1.5 bits"
    assert "weight memory" in r["pareto"]["refused"][0]["reason"]
    assert r["summary"]["cells"][0]["method"] == "uniform"
    assert "Refused" in r["markdown"]
    assert (tmp_path / "summary.md").exists() and (tmp_path / "report.html").exists()
    assert any("refused" in m for m in msgs)
    with pytest.raises(sq.Error, match="unknown setting 'nope'"):
        sq.pareto(lenet_path, "size", ["uniform"], [4], data=data, out_dir=tmp_path / "x", nope=1)
    with pytest.raises(sq.Error, match="pareto: data"):
        sq.pareto(lenet_path, "size", ["uniform"], [4], data=3, out_dir=tmp_path / "y")
