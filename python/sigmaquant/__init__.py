"""SigmaQuant: hardware-aware mixed-precision quantization.

    import numpy as np
    import sigmaquant as sq

    model = sq.load_model("models/lenet5-fmnist.sqg")          # FP32 network (.sqg)
    data = sq.load_data("fashion-mnist")                        # or sq.Data(sq.Dataset(x, y), ...)
    r = sq.quantize(model, "targets/shiftadd.json", method="sigmaquant", data=data,
                    avg_bits=4, final_epochs=0.25)
    print(r.summary())
    r.model.export_sqm("lenet5.sqm")
    logits = sq.Engine("lenet5.sqm").run(data.test.images[:8])  # integer engine, N x classes
    cmp = sq.pareto(model, "targets/shiftadd.json", ["sigmaquant", "hessian", "uniform"],
                    [2.5, 4], data=data, seeds=[1, 2, 3], out_dir="runs/cmp")
    print(cmp["markdown"])                                      # mean ± std, Welch's p, refusals

Accuracies are fractions in [0, 1]; budgets are in bytes, seconds and joules. Every error caused
by the input raises sigmaquant.Error with a message naming the file or argument and the field.
The API, its C++ twin and how to install: docs/api.md.
"""

from ._core import (  # noqa: F401
    Data,
    Dataset,
    Engine,
    Error,
    Graph,
    QuantModel,
    QuantizeResult,
    Target,
    __version__,
    cost,
    import_onnx,
    load_data,
    load_model,
    load_quantized,
    load_run_log,
    load_target,
    method_info,
    methods,
    pareto,
    quantize,
    set_threads,
    zoo_model,
    zoo_names,
)

__all__ = [
    "Data", "Dataset", "Engine", "Error", "Graph", "QuantModel", "QuantizeResult", "Target",
    "cost", "import_onnx", "load_data", "load_model", "load_quantized", "load_run_log",
    "load_target", "method_info", "methods", "pareto", "quantize", "set_threads", "zoo_model", "zoo_names",
]
