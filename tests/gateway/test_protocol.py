"""OIP v2 request parsing and the guard.toml reader, without a server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tripwire.errors import InputError
from tripwire.gateway.config import load_config
from tripwire.gateway.core import degrade
from tripwire.gateway.protocol import ProtocolError, infer_response, parse_infer
from tripwire.reports.findings import Severity


def body(shape: list[int], data: object, datatype: str = "FP32", name: str = "pixels") -> bytes:
    return json.dumps(
        {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}
    ).encode()


def test_flat_and_nested_data_give_the_same_tensor() -> None:
    x = np.arange(2 * 4, dtype=np.float32).reshape(2, 1, 2, 2) / 10
    flat = parse_infer(body([2, 1, 2, 2], x.reshape(-1).tolist()), (1, 2, 2))
    nested = parse_infer(body([2, 1, 2, 2], x.tolist()), (1, 2, 2))
    assert flat.input_name == "pixels"
    np.testing.assert_array_equal(flat.x, x)
    np.testing.assert_array_equal(nested.x, x)
    assert flat.x.dtype == np.float32


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (json.dumps({"inputs": []}).encode(), "bad_inputs"),
        (body([1, 1, 2, 2], [0.0] * 4, datatype="INT64"), "bad_datatype"),
        (body([1, 1, 2, 3], [0.0] * 6), "bad_shape"),  # not the model's shape
        (body([1, 1, 2, 2], [0.0] * 5), "bad_shape"),  # data does not fill the shape
        (body([4], [0.0] * 4), "bad_shape"),  # no batch axis
        (body([1, 1, 2, 2], ["a"] * 4), "bad_data"),
        (body([1, 1, 2, 2], [True] * 4), "bad_data"),
        (body([1, 1, 2, 2], [[0.0, 1.0], [0.0]]), "bad_data"),  # ragged
        (
            b'{"inputs": [{"shape": [1,1,2,2], "datatype": "FP32", "data": [NaN,0,0,0]}]}',
            "bad_data",
        ),
    ],
)
def test_every_malformed_body_is_a_400_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_infer(raw, (1, 2, 2))
    assert info.value.status == 400
    assert info.value.reason == reason


def test_response_first_output_is_probabilities() -> None:
    p = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)
    out = infer_response("m", p, "r1")["outputs"][0]
    assert out["name"] == "probabilities" and out["datatype"] == "FP32"
    assert out["shape"] == [2, 2] and out["data"] == [0.25, 0.75, 1.0, 0.0]


def test_degrade_keeps_the_top_class_only_or_rounds() -> None:
    p = np.array([[0.14, 0.81, 0.05], [0.34, 0.33, 0.33]], dtype=np.float32)
    top = degrade(p, "top1", 1)
    np.testing.assert_array_equal(top, [[0, 1, 0], [1, 0, 0]])
    r = degrade(p, "round", 1)
    np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(r.argmax(1), p.argmax(1))
    np.testing.assert_allclose(r[0], [0.1, 0.8, 0.1], atol=1e-6)


def test_config_reads_keys_and_enforcement(tmp_path: Path) -> None:
    cfg_path = tmp_path / "guard.toml"
    cfg_path.write_text(
        '[keys]\nalice = "k-alice"\nbob = "k-bob"\n[enforce]\nblock = "high"\n'
        "[query_log]\npayloads = false\n"
    )
    cfg = load_config(cfg_path)
    assert cfg.keys == {"k-alice": "alice", "k-bob": "bob"}
    assert cfg.enforce.action_for(Severity.HIGH) == "block"
    assert cfg.enforce.action_for(Severity.MEDIUM) == "degrade"
    assert cfg.enforce.action_for(Severity.LOW) is None
    assert cfg.query_log.payloads is False


def test_config_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "guard.toml").write_text('[alerts]\nlog = "alerts.jsonl"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config("etc/guard.toml").alert_log == str(folder.resolve() / "alerts.jsonl")
    (folder / "abs.toml").write_text(f'[alerts]\nlog = "{tmp_path / "a.jsonl"}"\n')
    assert load_config(folder / "abs.toml").alert_log == str(tmp_path / "a.jsonl")
    (folder / "clf.toml").write_text('[monitor]\nclassifier = "colour.json"\n')
    assert load_config("etc/clf.toml").classifier == str(folder.resolve() / "colour.json")
    assert load_config(None).classifier is None


@pytest.mark.parametrize(
    "text",
    [
        "[keys]\na = 'same'\nb = 'same'\n",
        "[nonsense]\nx = 1\n",
        "[enforce]\nblock = 'severe'\n",
        "[limits]\nmax_batch = 'many'\n",
        "not = [toml",
    ],
)
def test_bad_config_is_one_input_error(tmp_path: Path, text: str) -> None:
    p = tmp_path / "guard.toml"
    p.write_text(text)
    with pytest.raises(InputError, match=r"guard\.toml"):
        load_config(p)
