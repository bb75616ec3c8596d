"""Targets and costs: load_target, Target.budgets, cost() with int / dict / file bits."""
import json

import pytest

import sigmaquant as sq


def test_load_target_file_and_builtin(source_dir):
    t = sq.load_target(source_dir / "targets" / "shiftadd.json")
    assert t.cost_model == "shiftadd"
    assert set(t.budgets) >= {"weight_bytes", "latency_s"}
    assert t.to_json()["model"] == "shiftadd"
    b = sq.load_target("mpic")
    assert b.cost_model == "mpic" and b.budgets == {}
    with pytest.raises(sq.Error, match="nonsense"):
        sq.load_target("nonsense")
    again = sq.Target.from_json(t.to_json())
    assert again.budgets == t.budgets


def test_cost_uniform_and_budgets(lenet):
    t = sq.load_target("size")
    t.budgets = {"weight_bytes": 30_000}
    c8 = sq.cost(lenet, t, bits=8)
    c2 = sq.cost(lenet, t, bits=2)
    assert c8["average_wbits"] == pytest.approx(8)
    assert [layer["name"] for layer in c8["cost"]["layers"]] == lenet.weight_layers
    assert c8["cost"]["total"]["weight_bytes"] > c2["cost"]["total"]["weight_bytes"]
    assert c8["budgets"][0]["key"] == "weight_kib"
    assert not c8["fits"] and c2["fits"]
    with pytest.raises(sq.Error, match="unknown budget"):
        t.budgets = {"area": 3}


def test_cost_per_layer_dict_and_file(lenet, tmp_path):
    first, last = lenet.weight_layers[0], lenet.weight_layers[-1]
    c = sq.cost(lenet, "bops", bits={first: 4, last: {"wbits": 2, "abits": 8}})
    layers = {layer["name"]: layer for layer in c["cost"]["layers"]}
    assert layers[first]["wbits"] == 4 and layers[last]["wbits"] == 2
    assert all(layers[n]["wbits"] == 8 for n in lenet.weight_layers[1:-1])
    path = tmp_path / "bits.json"
    path.write_text(json.dumps(c["bits"]))
    assert sq.cost(lenet, "bops", bits=path)["cost"] == c["cost"]
    with pytest.raises(sq.Error, match="no_such_layer"):
        sq.cost(lenet, "bops", bits={"no_such_layer": 4})
    with pytest.raises(sq.Error, match="wbits"):
        sq.cost(lenet, "bops", bits=12)
    with pytest.raises(sq.Error, match="give the bits"):
        sq.cost(lenet, "bops")
