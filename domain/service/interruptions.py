"""What a failed iteration's error says when its work was ended by an exception or an interruption."""

from __future__ import annotations

from itertrack.domain.model.text import check_error_message, error_message_of


def failure_message(exc: BaseException, *, cancelled: bool = False) -> str:
    """The error stored when `exc` ended an iteration's work (at most `MAX_ERROR_MESSAGE` characters).

    An `Exception` gives its own message (`error_message_of`). Anything else (`KeyboardInterrupt`, `SystemExit`,
    `GeneratorExit`, `asyncio.CancelledError`, ...) means the work was interrupted, not that it went wrong:
    `"interrupted: KeyboardInterrupt"`, followed by the exception's text when it has one
    (`"interrupted: SystemExit: 3"`). With `cancelled` (an asyncio host's task was cancelled, or timed out by
    `asyncio.timeout`/`wait_for`: the async adapter tells), it says so: `"cancelled: CancelledError"`.
    """
    if isinstance(exc, Exception):
        return error_message_of(exc)
    name = type(exc).__name__
    text = f"{'cancelled' if cancelled else 'interrupted'}: {name}"
    if str(exc).strip():
        text = f"{text}: {error_message_of(exc)}"
    return check_error_message(text)  # cut to the limit with a marker, as every stored error
