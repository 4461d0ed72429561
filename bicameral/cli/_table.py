"""Tables for people: left-aligned columns that fit the terminal.

``mcp list`` and ``mcp ps`` print one on a terminal (JSON otherwise).
"""

from __future__ import annotations

__all__ = ["table"]


def table(rows: list[list[str]], *, wrap_last: bool = False) -> str:
    """Left-aligned columns; the last one is cut to the terminal width.

    With `wrap_last`, a last cell that does not fit goes whole on the lines
    under its row instead (indented, wrapped to the width): what it says
    (``mcp ps``'s last error: its cause) is the part worth reading.
    """
    import shutil
    import textwrap

    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    width = shutil.get_terminal_size((100, 24)).columns
    lines = []
    for row in rows:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        full = f"{line}  {row[-1]}"
        if len(full) > width > 20 and wrap_last and row is not rows[0]:
            lines.append(line.rstrip())
            lines.extend(
                textwrap.wrap(row[-1], width, initial_indent="    ", subsequent_indent="    ")
            )
            continue
        if len(full) > width > 20:
            full = full[: width - 1] + "…"
        lines.append(full.rstrip())
    return "\n".join(lines)
