"""The CLI's CSV reader: which line is a header, delimiters, index columns, missing cells;
the rows read are checked against the table that was written."""

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bayes_dgmm.experiments.cli import main
from bayes_dgmm.experiments.cli_io import MISSING, load_csv, read_table

DATA = np.array([[0.25, -1.5, 3.125], [2.5, 0.5, -0.75], [1.0e-3, 7.5, 2.0]])


def _write(path, header, data=DATA, sep=","):
    lines = ([sep.join(header)] if header is not None else []) + [
        sep.join(repr(float(v)) for v in row) for row in data
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("header", [["0", "1", "2"], ["1", "2", "3"], ["1990", "1991", "1992"]])
def test_numbers_counting_up_on_line_1_are_a_header_with_a_warning(tmp_path, header):
    path = _write(tmp_path / "X.csv", header)
    with pytest.warns(UserWarning, match=r"line 1 \(.*\) is taken as a header.*--header no"):
        X = load_csv(path)
    np.testing.assert_array_equal(X, DATA)


def test_header_option_overrides_the_guess(tmp_path):
    path = _write(tmp_path / "X.csv", ["0", "1", "2"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_data = load_csv(path, header="no")
        as_header = load_csv(path, header="yes")
    np.testing.assert_array_equal(as_data, np.vstack([[0, 1, 2], DATA]))
    np.testing.assert_array_equal(as_header, DATA)
    # two numbers counting up are data above rows of integers, a header above decimals
    ints, decimals = tmp_path / "ints.csv", tmp_path / "decimals.csv"
    ints.write_text("0,1\n3,4\n")
    decimals.write_text("0,1\n3,4.5\n")
    assert load_csv(ints).tolist() == [[0, 1], [3, 4]]
    with pytest.warns(UserWarning, match="taken as a header"):
        assert load_csv(decimals).tolist() == [[3, 4.5]]
    # a first row of numbers that do not count up by one is data
    plain = _write(tmp_path / "Y.csv", None)
    np.testing.assert_array_equal(load_csv(plain), DATA)
    np.testing.assert_array_equal(load_csv(plain, header="yes"), DATA[1:])


@pytest.mark.parametrize(
    ("text", "rows", "cols"),
    [
        ("Na,Mg,Al\n1,2,3\n4,5,6\n", 2, 3),  # sodium is a name, not a missing value
        ("a;b\n1.5;2\n3;4\n", 2, 2),  # semicolons
        ("a\tb\n1.5\t2\n3\t4\n", 2, 2),  # tabs
        ("a,b,\n1,2,\n3,4,\n", 2, 2),  # a comma ending every line
    ],
)
def test_header_names_and_delimiters(tmp_path, text, rows, cols):
    path = tmp_path / "X.csv"
    path.write_text(text)
    assert load_csv(path).shape == (rows, cols)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (",a,b\n0,1.5,2\n1,3,4\n", r"column 1 has no name on line 1, as pandas writes its index"),
        ("a,b,c,\n1,2,3\n", r"line 1 \(the header\) ends with a comma"),
        ("a,b,c\n1,2\n", r"the header \(line 1\) has 3 names but row 1 has 2 cells"),
        ("1;2,5\n3;4\n", r"'2,5'.*write decimals with a point"),
        ("x,2019\n1,2\n", r"'x' at row 1 .*if line 1 is a header, pass --header yes"),
        ("a\n1\n\n2\n", r"line 3 is blank, a missing value in this one-column file"),
    ],
)
def test_unclear_tables_are_refused_with_the_reason(tmp_path, text, match):
    path = tmp_path / "X.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"--data='.*X\.csv'.*" + match):
        load_csv(path)


TEXT_NAMES = ["x1", "Na", "Mg", "height", "größe", "a b", "NA", "Unnamed"]
MISSING_CELLS = ["", "NA", "nan", "?", " "]


@st.composite
def tables(draw):
    n = draw(st.integers(1, 5))
    j = draw(st.integers(1, 4))
    data = draw(
        st.lists(
            st.lists(
                st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: v + 0.5), min_size=j, max_size=j
            ),
            min_size=n,
            max_size=n,
        )
    )
    kind = draw(st.sampled_from(["none", "text", "count0", "count1", "years", "index"]))
    start = {"count0": 0, "count1": 1, "years": 1990}.get(kind)
    header = {
        "none": None,
        "text": draw(st.lists(st.sampled_from(TEXT_NAMES), min_size=j, max_size=j)),
        "index": [""] + [f"c{k}" for k in range(j)],
    }.get(kind, [str(start + k) for k in range(j)] if start is not None else None)
    cells = [[repr(v) for v in row] for row in data]
    if kind == "index":
        cells = [[str(i), *row] for i, row in enumerate(cells)]
    missing = draw(st.none() | st.tuples(st.integers(0, n - 1), st.integers(0, j - 1)))
    if missing is not None:
        r, c = missing
        marker = draw(st.sampled_from(MISSING_CELLS))
        # in a one-column file an empty cell is a blank line, ignored at the file's ends
        cells[r][c + (kind == "index")] = "NA" if j == 1 and marker == "" else marker
    sep = draw(st.sampled_from([",", ";", "\t"]))
    return kind, header, cells, sep, missing, np.array(data)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=tables())
@example(table=("count0", ["0", "1"], [["0.5", "1.5"]], ",", None, np.array([[0.5, 1.5]])))
def test_rows_read_and_errors_over_headers_and_cells(tmp_path, table):
    kind, header, cells, sep, missing, data = table
    lines = ([sep.join(header)] if header is not None else []) + [sep.join(r) for r in cells]
    path = tmp_path / "X.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    j = data.shape[1]
    names_only_missing = kind == "text" and all(h.strip().lower() in MISSING for h in header)
    counted = kind in ("count0", "count1", "years")
    # a lone number on line 1 (one column) is data, never a header
    header_is_data = (counted and j == 1) or names_only_missing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            X = load_csv(path)
        except ValueError as exc:
            message = str(exc)
        else:
            message = None
    if kind == "index":
        assert message is not None and "as pandas writes its index" in message
    elif missing is not None:
        assert message is not None, X
        assert (
            "missing" in message
            or "blank" in message
            or (names_only_missing and "not a number" in message)
        ), message
    elif names_only_missing:
        assert message is not None and "--header yes" in message, message
    else:
        assert message is None, message
        expected = data if not header_is_data else np.vstack([[float(h) for h in header], data])
        np.testing.assert_array_equal(X, expected)


def test_rows_read_in_the_output_and_a_numeric_header_does_not_become_a_row(tmp_path, capsys):
    argv = ["simulate", "--spec", "mfa-2layer", "--n-samples", "60", "--n-features", "5"]
    assert main([*argv, "--seed", "1", "--out", str(tmp_path / "sim"), "--quiet"]) == 0
    plain = tmp_path / "sim" / "X.csv"
    years = tmp_path / "years.csv"
    lines = plain.read_text().splitlines()
    years.write_text("\n".join(["1990,1991,1992,1993,1994", *lines[1:]]) + "\n")
    labels = str(tmp_path / "sim" / "labels.csv")
    fits = {}
    for name, path in (("plain", plain), ("years", years)):
        out = tmp_path / name
        fit = ["fit", "--data", str(path), "--labels", labels, "--spec", "mfa-2layer"]
        assert main([*fit, "--method", "gmm", "--quick", "--out", str(out)]) == 0
        stdout = capsys.readouterr().out
        assert "read 60 rows and 5 columns" in stdout
        fits[name] = json.loads((out / "fit.json").read_text())
        assert len((out / "labels.csv").read_text().splitlines()) == 61
    assert fits["years"]["log_likelihood"] == fits["plain"]["log_likelihood"]
    assert fits["years"]["ari_path"] == fits["plain"]["ari_path"] > 0.2


def test_labels_with_one_row_of_numbers_too_many_lose_line_1(tmp_path):
    from bayes_dgmm.experiments.cli_io import read_labels
    from bayes_dgmm.model.spec import load_spec

    path = tmp_path / "labels.csv"
    path.write_text("0,1\n0,1\n1,0\n1,1\n")
    with pytest.warns(UserWarning, match="one row more than --data"):
        lab = read_labels(path, np.zeros((3, 2)), load_spec("mfa-2layer"))
    np.testing.assert_array_equal(lab, [[0, 1], [1, 0], [1, 1]])


def test_read_table_names_the_delimiter(tmp_path):
    path = tmp_path / "X.csv"
    path.write_text("a\tb\n1\t2\n")
    assert read_table(path).delimiter == "\t"
