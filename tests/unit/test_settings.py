"""Every ITERTRACK_* setting is declared once; one yes/no parser; a bad value names the setting."""

from __future__ import annotations

import pytest

from itertrack.adapters.settings import load_settings
from itertrack.domain import StoreConfigError


@pytest.mark.parametrize(("raw", "expected"), [("y", True), ("YES", True), ("1", True), ("n", False), ("off", False)])
def test_yes_no_settings_share_one_parser(raw: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every yes/no setting reads the same words, from the environment or from a tracker's env mapping."""
    monkeypatch.setenv("ITERTRACK_FORWARD", raw)
    assert load_settings().forward is expected
    monkeypatch.delenv("ITERTRACK_FORWARD")
    assert load_settings({"ITERTRACK_START_OFFLINE": raw}).start_offline is expected


@pytest.mark.parametrize("name", ["ITERTRACK_MIGRATE", "ITERTRACK_FORWARD", "ITERTRACK_START_OFFLINE"])
def test_a_malformed_yes_no_names_the_setting_and_the_value(name: str) -> None:
    """'maybe' is not a yes/no: StoreConfigError names the variable and shows the value."""
    with pytest.raises(StoreConfigError, match=f"{name}='maybe'"):
        load_settings({name: "maybe"})


def test_empty_values_mean_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty variable is as if unset (the defaults: migrate decided per store, start offline, forward)."""
    monkeypatch.setenv("ITERTRACK_MIGRATE", "")
    monkeypatch.setenv("ITERTRACK_STORE", "  ")
    settings = load_settings({"ITERTRACK_FORWARD": ""})
    assert (settings.migrate, settings.store, settings.forward, settings.start_offline) == (None, None, True, True)


def test_the_env_mapping_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracker's env= overrides what the process environment says."""
    monkeypatch.setenv("ITERTRACK_STORE", "memory://")
    assert load_settings({"ITERTRACK_STORE": "sqlite:///x.db"}).store == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("name", "raw", "fragment"),
    [
        ("ITERTRACK_STATEMENT_TIMEOUT", "soon", "from 0 to 86400"),
        ("ITERTRACK_LOCK_TIMEOUT", "-1", "from 0 to 3600"),
        ("ITERTRACK_CONNECT_TIMEOUT", "0", "from 1 to 600"),
    ],
)
def test_a_malformed_timeout_names_the_setting_the_value_and_the_range(name: str, raw: str, fragment: str) -> None:
    """Timeouts are whole seconds in a range; anything else is a StoreConfigError naming the variable."""
    with pytest.raises(StoreConfigError, match=f"{name}='{raw}': must be a whole number of seconds {fragment}"):
        load_settings({name: raw})


def test_timeouts_default_to_the_documented_bounds() -> None:
    """statement 10 s, lock 5 s, connect 2 s (README, Settings); the environment's values are whole seconds."""
    settings = load_settings(
        {"ITERTRACK_STATEMENT_TIMEOUT": "", "ITERTRACK_LOCK_TIMEOUT": "", "ITERTRACK_CONNECT_TIMEOUT": ""}
    )
    assert (settings.statement_timeout, settings.lock_timeout, settings.connect_timeout) == (10, 5, 2)
    assert load_settings({"ITERTRACK_STATEMENT_TIMEOUT": "60"}).statement_timeout == 60
