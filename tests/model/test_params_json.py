"""DGMMParams.from_json on files written by other tools: a byte-order mark, another encoding."""

import pytest

from bayes_dgmm import DGMMParams


@pytest.fixture
def params():
    return DGMMParams.random(4, (2, 2), (2, 1), random_state=0)


def test_a_byte_order_mark_is_ignored(params, tmp_path):
    path = tmp_path / "params.json"
    path.write_bytes(b"\xef\xbb\xbf" + params.to_json().encode())
    assert DGMMParams.from_json(path) == params
    assert DGMMParams.from_json(str(path)) == params
    assert DGMMParams.from_json("\ufeff" + params.to_json()) == params


def test_not_utf8_or_not_json_names_the_file(params, tmp_path):
    path = tmp_path / "params.json"
    path.write_bytes(params.to_json().encode()[:-5] + "ü".encode("latin-1"))
    with pytest.raises(ValueError, match=r"text_or_path='.*params\.json' is not UTF-8 text"):
        DGMMParams.from_json(path)
    path.write_text(params.to_json()[:-5])
    with pytest.raises(ValueError, match=r"text_or_path='.*params\.json' is not valid JSON"):
        DGMMParams.from_json(path)
