"""`shown` and `escape_controls`: host text on a terminal shows its control characters escaped and no markup."""

from __future__ import annotations

import io
import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from itertrack.adapters.cli.terminal import escape_controls, shown

BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def rendered(renderable: RenderableType) -> str:
    """What a rich console prints (no colours: not a terminal), without the final newline."""
    buffer = io.StringIO()
    Console(file=buffer, width=10_000, soft_wrap=True, color_system=None).print(renderable)
    return buffer.getvalue().removesuffix("\n")


def unsafe(char: str) -> bool:
    return unicodedata.category(char) in {"Cc", "Zl", "Zp"} or char in BIDI


def test_escapes_are_spelled_out() -> None:
    """ESC is the four characters \\x1b, a newline \\n, a C1 control \\x9b, an RTL override \\u202e."""
    assert escape_controls("a\x1b[2Jb\nc\r\td\x00\x7f\x9b\u202e\u2028") == (
        "a\\x1b[2Jb\\nc\\r\\td\\x00\\x7f\\x9b\\u202e\\u2028"
    )


def test_every_unsafe_character_is_escaped_and_nothing_else_changes() -> None:
    """Over the whole of Unicode: a control, separator or bidi character is replaced, any other is kept."""
    for code in range(0x110000):
        char = chr(code)
        result = escape_controls(char)
        if unsafe(char):
            assert re.fullmatch(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|[nrt])", result), hex(code)
        else:
            assert result == char, hex(code)


def test_markup_and_controls_print_literally() -> None:
    """`[red]`, `\\[`, `:warning:` in an error print as written; a console never receives the ESC of `\x1b[2J`."""
    error = "boom \x1b[2J[red]cleared[/red] \\[bold] :warning: [/]\\"
    line = rendered(Text.assemble(("error: ", "bold"), shown(error)))
    assert line == "error: boom \\x1b[2J[red]cleared[/red] \\[bold] :warning: [/]\\"
    table = Table("error")
    table.add_row(shown(error))
    assert "\x1b" not in rendered(table)
    assert "[red]cleared[/red] \\[bold] :warning: [/]\\" in rendered(table)


@given(st.text())
def test_any_text_prints_as_its_escaped_form(text: str) -> None:
    """Whatever a host sends, the console prints exactly the escaped text: no markup read, no control left."""
    out = rendered(Text.assemble(("[b]", "bold"), shown(text), ("[/b]", "red")))
    assert out == f"[b]{escape_controls(text)}[/b]"
    assert not any(unsafe(c) for c in out)
