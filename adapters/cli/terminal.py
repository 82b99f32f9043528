"""Host-supplied text made safe for a terminal: control characters shown escaped, rich markup inert.

Error texts, agent ids, phase and metric names and record fields come from hosts (or from whoever can
write to the store). Printed raw, an ESC sequence such as ``\\x1b[2J`` clears the operator's screen, a
carriage return overwrites a line, a bidi override reorders it, and in a rich markup string ``[red]`` is
a style and ``:warning:`` an emoji. Every such string passes through `shown` before it reaches a rich
console: a `Text`, which rich never parses (escaping markup in a string is leaky: rich turns ``\\[``
into ``[`` and can lose a trailing backslash). `escape_controls` alone serves plain writes (the
one-line errors on stderr). JSON and HTML output have escaping of their own and do not use these.
"""

from __future__ import annotations

import codecs
import re
import sys

from rich.text import Text

# C0 controls, DEL and C1 controls (Unicode category Cc), the line and paragraph separators, and the
# bidirectional formatting characters (they reorder what follows them on the line).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: object) -> str:
    """`str(text)` with every control character written as an escape: ESC as the four characters
    ``\\x1b``, newline as ``\\n``, U+202E as ``\\u202e``; everything else (a backslash too) unchanged."""
    return _UNSAFE.sub(_escaped, str(text))


def escape_unencodable(text: str, encoding: str | None = None) -> str:
    """`text` with each character `encoding` (default: stdout's) cannot encode written as a Python escape: under
    an ASCII locale an emoji becomes the ten characters ``\\U0001f680``, ``é`` becomes ``\\xe9``."""
    encoding = encoding or getattr(sys.stdout, "encoding", None) or "utf-8"
    if text.isascii() or codecs.lookup(encoding).name == "utf-8":
        return text
    return text.encode(encoding, "backslashreplace").decode(encoding)


def shown(text: object) -> Text:
    """`str(text)` as a rich `Text` with its control characters escaped: printed as written, never read as
    markup (``[red]``, ``\\[``) or emoji codes (``:warning:``). Use it for every host-supplied string
    rendered on a terminal, as a table cell or a part of a line (`Text.assemble`). Characters stdout cannot
    encode are escaped too (`escape_unencodable`), so tables keep their widths on a non-UTF-8 terminal."""
    return Text(escape_unencodable(escape_controls(text)))
