"""keras_mtl.markdown: the one Markdown table writer."""

from keras_mtl.markdown import table_lines


def test_table_lines_header_rule_and_rows():
    lines = table_lines(["setting", "delta-m"], [["static", 1.5], ["famo", ""]])
    assert lines == [
        "| setting | delta-m |",
        "|---|---|",
        "| static | 1.5 |",
        "| famo |  |",
    ]
    assert table_lines(["a"], []) == ["| a |", "|---|"]
