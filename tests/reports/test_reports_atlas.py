"""The ATLAS technique table and its helpers."""

from __future__ import annotations

import re

import pytest

from tripwire.reports import (
    ATLAS_TECHNIQUES,
    ATLAS_VERSION,
    atlas_label,
    atlas_name,
    atlas_url,
    is_atlas_id,
    validate_atlas_ids,
)

REQUIRED = {
    "AML.T0020": "Poison Training Data",
    "AML.T0018": "Manipulate AI Model",
    "AML.T0018.000": "Poison AI Model",
    "AML.T0043.004": "Insert Backdoor Trigger",
    "AML.T0024.002": "Extract AI Model",
    "AML.T0040": "AI Model Inference API Access",
    "AML.T0010": "AI Supply Chain Compromise",
    "AML.T0010.002": "Data",
    "AML.T0019": "Publish Poisoned Datasets",
    "AML.T0005": "Create Proxy AI Model",
}


@pytest.mark.parametrize(("tid", "name"), REQUIRED.items())
def test_required_techniques_use_atlas_5_names(tid: str, name: str) -> None:
    assert atlas_name(tid) == name


def test_version_is_recorded() -> None:
    assert ATLAS_VERSION.startswith("5.")


def test_every_id_in_the_table_is_well_formed_and_named() -> None:
    for tid, name in ATLAS_TECHNIQUES.items():
        assert is_atlas_id(tid)
        assert name.strip() == name
        assert name


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        ATLAS_TECHNIQUES["AML.T9999"] = "x"  # type: ignore[index]


def test_url_keeps_the_dotted_sub_technique_id() -> None:
    assert atlas_url("AML.T0018.000") == "https://atlas.mitre.org/techniques/AML.T0018.000"
    assert atlas_url("AML.T0020") == "https://atlas.mitre.org/techniques/AML.T0020"


def test_label_prefixes_the_parent_for_sub_techniques() -> None:
    assert atlas_label("AML.T0010.002") == "AI Supply Chain Compromise: Data"
    assert atlas_label("AML.T0020") == "Poison Training Data"


@pytest.mark.parametrize("bad", ["AML.T20", "aml.t0020", "AML.T0020.1", "T0020", "", "AML.TA0001"])
def test_malformed_ids_are_rejected(bad: str) -> None:
    assert not is_atlas_id(bad)
    with pytest.raises(ValueError, match="malformed"):
        atlas_name(bad)


def test_unknown_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown ATLAS technique id 'AML.T9999'")):
        validate_atlas_ids(["AML.T0020", "AML.T9999"])
    with pytest.raises(ValueError):
        atlas_url("AML.T9999")


def test_validate_keeps_order_and_drops_duplicates() -> None:
    ids = ["AML.T0043.004", "AML.T0020", "AML.T0043.004"]
    assert validate_atlas_ids(ids) == ("AML.T0043.004", "AML.T0020")


def test_validate_rejects_a_bare_string_and_non_strings() -> None:
    with pytest.raises(ValueError, match="not a single string"):
        validate_atlas_ids("AML.T0020")
    with pytest.raises(ValueError, match="must be a string"):
        validate_atlas_ids([20])  # type: ignore[list-item]
