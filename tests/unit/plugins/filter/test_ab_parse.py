"""Tests of the ab_parse, ab_parse_csv and ab_parse_gnuplot filters (the integration test uses them in Ansible)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.filewcount.gitops.plugins.filter import ab_parse, ab_parse_csv, ab_parse_gnuplot

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ab"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def filters() -> dict:
    found = {}
    for plugin in (ab_parse, ab_parse_csv, ab_parse_gnuplot):
        found.update(plugin.FilterModule().filters())
    return found


def test_filter_names():
    assert set(filters()) == {"ab_parse", "ab_parse_csv", "ab_parse_gnuplot"}


def test_ab_parse_returns_report():
    report = filters()["ab_parse"](fixture("keepalive.stdout"))
    assert report["keep_alive_requests"] == 200
    assert report["percentiles_ms"]["100"] >= report["percentiles_ms"]["50"]


def test_ab_parse_csv_and_gnuplot():
    assert len(filters()["ab_parse_csv"](fixture("normal.csv"))) == 101
    assert filters()["ab_parse_gnuplot"](fixture("normal.tsv"))["requests"] == 200


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("ab_parse", fixture("refused.stdout"), "ab_parse: The text holds no ab statistics"),
        ("ab_parse", fixture("reset.stdout"), "only that 19 requests completed"),
        ("ab_parse", None, "must be text"),
        ("ab_parse_csv", "nonsense", "ab_parse_csv: The CSV does not start"),
        ("ab_parse_gnuplot", "nonsense", "ab_parse_gnuplot: The gnuplot file does not start"),
    ],
)
def test_bad_input_is_an_ansible_filter_error(name, data, words):
    with pytest.raises(AnsibleFilterError, match=words):
        filters()[name](data)
