"""Models and data: load_model, the layer table, zoo models, Dataset from numpy, load_data."""
import numpy as np
import pytest

import sigmaquant as sq
from conftest import synthetic, write_npy_data


def test_load_model_layer_table(lenet):
    assert lenet.input_shape == (1, 28, 28)
    assert lenet.num_classes == 10
    names = [layer["name"] for layer in lenet.layers]
    assert len(names) == len(set(names))
    weight_layers = [layer for layer in lenet.layers if layer["weight_layer"]]
    assert [layer["name"] for layer in weight_layers] == lenet.weight_layers
    assert len(weight_layers) == 5  # conv 6, conv 16, fc 120, fc 84, fc 10
    assert sum(layer["params"] for layer in lenet.layers) == lenet.total_params
    assert all(layer["weight_std"] > 0 for layer in weight_layers)
    assert lenet.layers[-1]["out_shape"] == (10,)
    assert "lenet" in repr(lenet)


def test_load_model_errors(tmp_path):
    with pytest.raises(sq.Error, match="missing.sqg"):
        sq.load_model(tmp_path / "missing.sqg")
    bad = tmp_path / "bad.sqg"
    bad.write_bytes(b"not a model")
    with pytest.raises(sq.Error, match="bad.sqg"):
        sq.load_model(str(bad))
    assert issubclass(sq.Error, RuntimeError)


def test_graph_save_roundtrip(lenet, tmp_path):
    lenet.save(tmp_path / "copy.sqg")
    again = sq.load_model(tmp_path / "copy.sqg")
    assert again.layers == lenet.layers
    assert again.to_json() == lenet.to_json()


def test_zoo_model():
    g = sq.zoo_model("resnet8", (3, 32, 32), 10)
    assert g.input_shape == (3, 32, 32)
    assert "resnet20" in sq.zoo_names()
    with pytest.raises(sq.Error, match="resnet1000"):
        sq.zoo_model("resnet1000", (3, 32, 32), 10)


def test_dataset_from_numpy():
    images, labels = synthetic(20, seed=3)
    d = sq.Dataset(images, labels)
    assert len(d) == 20
    assert d.image_shape == (1, 28, 28)
    assert d.num_classes == max(2, int(labels.max()) + 1)
    np.testing.assert_array_equal(d.images, images)
    np.testing.assert_array_equal(d.labels, labels)
    # uint8 pixels are scaled, N x H x W gets one channel
    u8 = sq.Dataset((images[:, 0] * 255).round().astype(np.uint8), labels, num_classes=10)
    assert u8.image_shape == (1, 28, 28) and u8.num_classes == 10
    np.testing.assert_allclose(u8.images, images, atol=1 / 255)
    assert len(d.take(5)) == 5
    train, val = d.split(0.25, seed=1)
    assert (len(train), len(val)) == (15, 5)


def test_dataset_errors():
    images, labels = synthetic(4, seed=3)
    with pytest.raises(sq.Error, match=r"\[0, 1\]"):
        sq.Dataset(images * 255, labels)
    with pytest.raises(sq.Error, match="4 labels for 3 images"):
        sq.Dataset(images[:3], labels)
    with pytest.raises(sq.Error, match="integer dtype"):
        sq.Dataset(images, labels.astype(np.float32))
    with pytest.raises(sq.Error, match="out of range"):
        sq.Dataset(images, labels + 10, num_classes=10)
    with pytest.raises(sq.Error, match="dimensions"):
        sq.Dataset(images[:, 0, 0], labels)


def test_load_data_npy(tmp_path):
    d = sq.load_data("npy", write_npy_data(tmp_path, train=30, test=10))
    assert (len(d.train), len(d.test)) == (30, 10)
    assert d.train.image_shape == (1, 28, 28)
    with pytest.raises(sq.Error, match="nowhere"):
        sq.load_data("npy", tmp_path / "nowhere")
    with pytest.raises(sq.Error, match="imagenet"):
        sq.load_data("imagenet", tmp_path)


def test_import_onnx(source_dir, tmp_path):
    """A CNN exported by torch.onnx.export (tests/data/fmnist_cnn.onnx: PyTorch 1.13, opset 13)."""
    path = source_dir / "tests" / "data" / "fmnist_cnn.onnx"
    g = sq.import_onnx(path)
    assert g.name == "fmnist_cnn"
    assert (g.input_shape, g.num_classes) == ((1, 28, 28), 10)
    assert g.input_mean == [0.0] and g.input_std == [1.0]
    assert [layer["op"] for layer in g.layers][:3] == ["input", "conv2d", "batchnorm"]
    named = sq.import_onnx(str(path), name="cnn", input_mean=[0.286], input_std=[0.353])
    assert named.name == "cnn" and named.input_std == pytest.approx([0.353])
    with pytest.raises(sq.Error, match="one per input channel"):
        sq.import_onnx(path, input_mean=[0.5, 0.5, 0.5])
    with pytest.raises(sq.Error, match="not_there.onnx"):
        sq.import_onnx(tmp_path / "not_there.onnx")
    # a quantized (QDQ) export is not a float CNN: its operators are named
    r = sq.quantize(g, "size", method="uniform", avg_bits=8,
                    data=sq.Data(sq.Dataset(*synthetic(100, 1), num_classes=10),
                                sq.Dataset(*synthetic(20, 2), num_classes=10)),
                    final_epochs=0, val_samples=20, calib_samples=32)
    r.model.export_onnx(tmp_path / "q.onnx")
    with pytest.raises(sq.Error, match="QuantizeLinear"):
        sq.import_onnx(tmp_path / "q.onnx")
    # the weight type: 8-bit weights after 8-bit activations are uint8 under auto, int8 forced
    r.model.export_onnx(tmp_path / "u8.onnx", weights="u8")
    assert (tmp_path / "u8.onnx").read_bytes() == (tmp_path / "q.onnx").read_bytes()
    r.model.export_onnx(tmp_path / "s8.onnx", weights="s8")
    assert b"int8 container (zero point 0)" in (tmp_path / "s8.onnx").read_bytes()
    with pytest.raises(sq.Error, match="expected auto, u8 or s8"):
        r.model.export_onnx(tmp_path / "x.onnx", weights="int8")
