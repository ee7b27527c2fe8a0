from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tripwire.errors import InputError  # noqa: E402
from tripwire.io import load_dataset  # noqa: E402
from tripwire.models.arch import build_model  # noqa: E402
from tripwire.models.loading import load_model, sniff_model_file  # noqa: E402


def test_pickle_is_refused_and_never_runs(pickle_bomb: tuple[Path, Path]) -> None:
    bomb, marker = pickle_bomb
    with pytest.raises(InputError, match="never unpickles"):
        load_model(bomb)
    assert not marker.exists()


def test_bomb_fixture_is_live(pickle_bomb: tuple[Path, Path]) -> None:
    """The fixture really is dangerous, so the refusal test above means something."""
    import pickle

    bomb, marker = pickle_bomb
    pickle.loads(bomb.read_bytes())
    assert marker.exists()


def test_torch_save_of_a_whole_module_is_refused(tmp_path: Path) -> None:
    # A full-module torch.save is a zip whose data.pkl names Python classes: without
    # --arch it must be refused, and with --arch weights_only loading refuses it.
    path = tmp_path / "module.pt"
    torch.save(build_model("mlp", (4,), 2), path)
    with pytest.raises(InputError, match="--arch"):
        load_model(path)
    with pytest.raises(InputError, match="safely"):
        load_model(path, arch="mlp", input_shape=(4,))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"hello world, not a model", "not a TorchScript archive"),
        (b"PK\x03\x04 broken zip", "damaged zip"),
    ],
)
def test_junk_model_files(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "m.pt"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_model(p)


def test_zip_that_is_not_a_model(tmp_path: Path) -> None:
    p = tmp_path / "m.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(InputError, match="not a TorchScript or PyTorch archive"):
        load_model(p)


def test_torchscript_contract(digits_model: Path) -> None:
    assert sniff_model_file(digits_model) == "torchscript"
    m = load_model(digits_model)
    ds = load_dataset("bundled:digits", split="test")
    assert m.check_input(ds.input_shape, ds.n_classes) == 10
    x = ds.model_input()[:7]
    logits, feats = m.logits_and_features(x, batch_size=3)
    assert logits.shape == (7, 10) and feats.shape[0] == 7
    np.testing.assert_allclose(m.logits(x), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.features(x), feats, rtol=1e-5, atol=1e-5)
    p = m.probabilities(x)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)


def test_foreign_traced_model_without_features(tmp_path: Path) -> None:
    """Any TorchScript model that follows the contract loads, not only ours."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval()
    path = tmp_path / "foreign.pt"
    torch.jit.trace(net, torch.zeros(1, 1, 8, 8)).save(str(path))
    m = load_model(path)
    assert not m.has_features
    assert m.check_input((1, 8, 8)) == 3
    with pytest.raises(InputError, match="no features"):
        m.features(np.zeros((1, 1, 8, 8), np.float32))


def test_shape_mismatch_is_input_error(digits_model: Path) -> None:
    m = load_model(digits_model)
    with pytest.raises(InputError, match="does not accept inputs of shape"):
        m.check_input((3, 32, 32))
    with pytest.raises(InputError, match="12 classes"):
        m.check_input((1, 8, 8), n_labels=12)


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_state_dict_with_arch(tmp_path: Path, fmt: str) -> None:
    net = build_model("cnn-small", (1, 8, 8), 10).eval()
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file(net.state_dict(), str(path))
    else:
        path = tmp_path / "w.pt"
        torch.save(net.state_dict(), path)
    with pytest.raises(InputError, match="--arch"):
        load_model(path)
    m = load_model(path, arch="cnn-small", input_shape=(1, 8, 8))
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(m.logits(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="do not fit"):
        load_model(path, arch="cnn-compact", input_shape=(3, 32, 32))


def test_onnx_model(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    m = load_model(path)
    assert m.kind == "onnx" and not m.has_features
    x = rng.random((5, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(m.logits(x), x.reshape(5, 64) @ w, rtol=1e-4, atol=1e-5)
    assert m.check_input((1, 8, 8)) == 3
