"""Patient ids, sub-labels and the three-class relabelling from file names."""
from __future__ import annotations

import os

import pytest

from medclass.data.patients import patient_from_name
from medclass.data.presets import CHEST_XRAY_3CLASSES, chest_xray_3class, sublabel_from_name
from medclass.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1234_bacteria_567.jpeg", "person1234"),
        ("person1234_virus_890.jpeg", "person1234"),
        ("person1_virus_12_1.jpeg", "person1"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0033-0001-0002.jpeg", "IM-0033"),
        ("NORMAL2-IM-0012-0001.jpeg", "NORMAL2-IM-0012"),
        ("NORMAL2-IM-0012-0001-0002.jpeg", "NORMAL2-IM-0012"),
        ("/data/train/PNEUMONIA/person7_bacteria_1.jpeg", "person7"),
        ("scan_0001.png", ""),
        ("person.png", ""),
    ],
)
def test_chest_xray_rule(name, patient):
    assert patient_from_name(name, "chest_xray") == patient


def test_none_rule_and_user_regex():
    assert patient_from_name("person1_bacteria_1.jpeg", "none") == ""
    assert patient_from_name("pt042_left_cc.png", r"^(pt\d+)_") == "pt042"
    assert patient_from_name("other.png", r"^(pt\d+)_") == ""
    assert patient_from_name("a/b/CASE-7-slice3.png", r"CASE-(\d+)-(?:slice\d+)") == "7"


@pytest.mark.parametrize(("regex", "words"), [(r"^pt\d+_", "0 capture groups"), (r"^(pt)(\d+)", "2 capture groups"), (r"^(pt\d+", "not a valid regular expression")])
def test_bad_regex_names_the_regex(regex, words):
    with pytest.raises(ConfigError) as e:
        patient_from_name("pt1_x.png", regex)
    assert repr(regex) in str(e.value) and words in str(e.value)


def test_sublabels_and_three_classes():
    assert sublabel_from_name("person1_bacteria_1.jpeg") == "bacteria"
    assert sublabel_from_name("person1_virus_12_1.jpeg") == "virus"
    assert sublabel_from_name("IM-0001-0001.jpeg") == ""
    assert CHEST_XRAY_3CLASSES == ("normal", "bacterial", "viral")
    assert chest_xray_3class("IM-0001-0001.jpeg", "NORMAL") == "normal"
    assert chest_xray_3class("person1_bacteria_1.jpeg", "PNEUMONIA") == "bacterial"
    assert chest_xray_3class("person1_virus_1.jpeg", "pneumonia") == "viral"
    assert chest_xray_3class("IM-0001-0001.jpeg", "PNEUMONIA") == ""


def test_every_chest_xray_file_gets_a_patient(shared_data):
    names = {d: os.listdir(shared_data / "chest_xray" / d) for d in ("NORMAL", "PNEUMONIA")}
    all_names = names["NORMAL"] + names["PNEUMONIA"]
    assert len(all_names) == 4979
    patients = [patient_from_name(n, "chest_xray") for n in all_names]
    assert all(patients)
    # independent check: the id is the name up to the first '_' (person...) or the first two/three '-' fields
    for name, patient in zip(all_names, patients):
        stem = name.rsplit(".", 1)[0]
        expected = stem.split("_")[0] if stem.startswith("person") else "-".join(stem.split("-")[: 3 if stem.startswith("NORMAL") else 2])
        assert patient == expected, name
    assert all(sublabel_from_name(n) in ("bacteria", "virus") for n in names["PNEUMONIA"])
    assert not any(sublabel_from_name(n) for n in names["NORMAL"])
