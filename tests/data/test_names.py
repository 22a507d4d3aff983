"""C-NMC file names: subjects keep their H prefix (any case), classes come from the suffix."""

import pytest

from leukopipe.data.cnmc_names import parse_name


@pytest.mark.parametrize(
    ("name", "subject", "label"),
    [
        ("UID_11_10_1_all.bmp", "11", 1),
        ("UID_H11_10_1_hem.bmp", "H11", 0),
        ("UID_h11_10_1_hem.bmp", "H11", 0),
        ("UID_57_29_1_all.BMP", "57", 1),
    ],
)
def test_parse(name, subject, label):
    parsed = parse_name(name)
    assert parsed.subject == subject
    assert parsed.label == label


def test_subject_11_and_h11_differ():
    assert parse_name("UID_11_1_1_all.bmp").subject != parse_name("UID_H11_1_1_hem.bmp").subject


@pytest.mark.parametrize(
    "bad", ["1.bmp", "UID_11_1_all.bmp", "UID_X11_1_1_all.bmp", "UID_11_1_1_all.png"]
)
def test_bad_names_raise_naming_the_file(bad):
    with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
        parse_name(bad)
