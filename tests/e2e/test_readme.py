"""The README's Python examples run as written, and print what their comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from relay_support import delete_stream, deliveries_of, relay_settings, require_nats, write_iterations

from itertrack.adapters.feed.relay import RelayConsumer
from itertrack.adapters.settings import Settings, env_name
from itertrack.domain import PerformanceTracker

README = Path(__file__).resolve().parents[2] / "README.md"
README_PG = "postgresql://root@127.0.0.1:5432/test"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def promised_output(block: str) -> list[str]:
    """The `# ...` comment after each print() call: what the README says it prints."""
    return [m.group(1).strip() for m in re.finditer(r"^\s*print\(.*\)\s+# (.+)$", block, flags=re.MULTILINE)]


def test_readme_has_the_examples() -> None:
    """The README shows the tracker API, the async tracker, the PostgreSQL example, the read models, prices and
    the feed's consumers."""
    blocks = python_blocks()
    assert len(blocks) == 7
    assert "start_iteration" in blocks[0]
    assert "AsyncPerformanceTracker" in blocks[1]
    assert README_PG in blocks[2]
    assert "ReadModels" in blocks[3]
    assert "TransactionalConsumer" in blocks[4]
    assert "price_call" in blocks[5]
    assert "pull_subscribe" in blocks[6]


@pytest.mark.parametrize("index", [0, 1, 3, 4])
def test_embedded_examples_run_and_print_what_they_say(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The examples on the embedded store run in a fresh directory, and each commented print matches."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ITERTRACK_STORE", raising=False)
    block = python_blocks()[index]
    exec(compile(block, str(README), "exec"), {})  # noqa: S102  # runs the README's own examples
    printed = capsys.readouterr().out.splitlines()
    promised = promised_output(block)
    assert promised
    assert printed[: len(promised)] == promised
    assert (tmp_path / "itertrack.db").exists()


def test_prices_example_prints_what_it_says(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The prices example (pure: no store) prints the dollars its comments computed by hand."""
    monkeypatch.delenv("ITERTRACK_PRICES", raising=False)
    block = python_blocks()[5]
    exec(compile(block, str(README), "exec"), {})  # noqa: S102  # runs the README's own examples
    promised = promised_output(block)
    assert len(promised) == 3
    assert capsys.readouterr().out.splitlines() == promised


@pytest.mark.postgres
def test_postgres_example_runs(pg_store: str) -> None:
    """The PostgreSQL example runs (on a test schema of its own)."""
    block = python_blocks()[2].replace(README_PG, pg_store)
    exec(compile(block, str(README), "exec"), {})  # noqa: S102  # runs the README's own examples


def test_every_setting_is_documented_in_the_readme() -> None:
    """The README names each ITERTRACK_* variable the settings declare (declared once, documented once)."""
    readme = README.read_text()
    declared = [env_name(field) for field in Settings.model_fields]
    assert [name for name in declared if name not in readme] == []


def test_relay_reader_example_reads_what_the_relay_published(
    sqlite_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The remote reader of "Relay to NATS JetStream" runs as written (on a stream and prefix of the test's own),
    printing one line per event the relay published, in log order."""
    url = require_nats()
    settings = relay_settings(url)
    with PerformanceTracker(store=sqlite_store, migrate=True) as tracker:
        write_iterations(tracker, ["team.alpha"])
        deliveries = deliveries_of(tracker)
    relay = RelayConsumer(settings)
    try:
        relay.handle_batch(deliveries)
        block = python_blocks()[6].replace('"itertrack.events.>"', f'"{settings.subjects}"')
        block = block.replace('stream="ITERTRACK"', f'stream="{settings.stream}"').replace("nats://127.0.0.1:4222", url)
        exec(compile(block, str(README), "exec"), {})  # noqa: S102  # runs the README's own examples
    finally:
        relay.close()
        delete_stream(url, settings.stream)
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in printed] == [[str(d.position), "team.alpha", d.event_type] for d in deliveries]
