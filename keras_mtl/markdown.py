"""Markdown tables, as the reports, comparisons and tuning results write them."""


def table_lines(headers, rows):
    """A Markdown table as lines: the header, the rule, one line per row.

    Args:
        headers: The column names.
        rows: Each row's cells (converted with `str`), as many as `headers`.

    Returns:
        A list of strings, one per line, without newlines.
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines
