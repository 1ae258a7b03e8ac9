"""Order links as users give them: CSV files and JSON bodies, checked before storing."""

from __future__ import annotations

import pytest

from bridge.store.links import LinkError, parse_csv, parse_json


def test_csv_rows_become_links_and_empty_cells_are_skipped() -> None:
    text = "shoplazza,prime,occ,cj\n1001,abc,o123,1001\n1002,,o124,\n\n ,def, ,CJ-3\n"
    assert parse_csv(text) == [
        {"shoplazza": "1001", "prime": "abc", "occ": "o123", "cj": "1001"},
        {"shoplazza": "1002", "occ": "o124"},
        {"prime": "def", "cj": "CJ-3"},
    ]


def test_csv_header_names_are_case_and_space_tolerant() -> None:
    assert parse_csv(" Shoplazza , CJ \n1,2\n") == [{"shoplazza": "1", "cj": "2"}]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "line 1: the file is empty"),
        ("shoplazza,amazon\n1,2\n", "line 1: unknown platform 'amazon'"),
        ("shoplazza,cj\n1001,\n", "line 2: a link needs the order's ids on two platforms"),
        ("shoplazza,cj\n1,2,3\n", "line 2: 3 cells for 2 platforms"),
        ("shoplazza,cj\n1,2\n3," + "x" * 300 + "\n", "line 3: cj:"),
        ("shoplazza,cj\n1,a\x01b\n", "line 2: cj:"),
    ],
)
def test_bad_csv_names_the_line(text: str, error: str) -> None:
    with pytest.raises(LinkError) as caught:
        parse_csv(text)
    assert str(caught.value).startswith(error), str(caught.value)


def test_json_takes_one_link_or_a_list() -> None:
    assert parse_json(b'{"prime": "abc", "cj": "1001"}') == [{"prime": "abc", "cj": "1001"}]
    assert parse_json(b' [{"prime": "a", "cj": "1"}, {"occ": "o", "shoplazza": "s"}]') == [
        {"prime": "a", "cj": "1"},
        {"occ": "o", "shoplazza": "s"},
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{}", "link 0: a link needs"),
        (b'{"cj": "1"}', "link 0: a link needs"),
        (b'{"cj": "1", "ebay": "2"}', "ebay: unknown platform"),
        (b'{"cj": 1, "occ": "2"}', "cj: Input should be a valid string"),
        (b'{"cj": "", "occ": "2"}', "cj: String should have at least 1 character"),
        (b"[1]", "0: Input should be an object"),
        (b"null", "body: Input should be an object"),
        (b"\xff", "body: Invalid JSON"),
    ],
)
def test_bad_json_says_what_is_wrong(body: bytes, error: str) -> None:
    with pytest.raises(LinkError) as caught:
        parse_json(body)
    assert error in str(caught.value), str(caught.value)
