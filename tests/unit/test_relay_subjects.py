"""The relay's agent tokens: any agent id is one valid NATS subject token, and the map is reversible."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from itertrack.adapters.feed.relay import RelaySettings
from itertrack.adapters.feed.schema import (
    agent_of_subject,
    decode_agent_token,
    encode_agent_token,
    subject_of,
)
from itertrack.domain.model.errors import InvalidInputError

# What a NATS subject token may hold without quoting anything, per the relay's documented alphabet.
TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
HOSTILE = ["a.b", "a b", "*", ">", "a.>", "  ", "_", "__", "_5F", "é", "日本", "🦀", "a\tb", "x" * 200, "-", ""]

agent_ids = st.text(st.characters(blacklist_categories=["Cs"]), max_size=200)


@given(agent_ids)
@example("a.b.*.>")
@example("")
def test_any_agent_id_is_one_token_that_decodes_back(agent_id: str) -> None:
    """Each agent id (dots, spaces, wildcards, unicode, empty) becomes one token of [A-Za-z0-9_-] that decodes
    to the same id, and the subject splits into exactly four tokens."""
    token = encode_agent_token(agent_id)
    assert TOKEN.fullmatch(token)
    assert decode_agent_token(token) == agent_id
    subject = subject_of(agent_id, "PhaseChanged")
    assert subject.split(".") == ["itertrack", "events", token, "PhaseChanged"]
    assert agent_of_subject(subject) == agent_id


@given(agent_ids, agent_ids)
def test_different_agent_ids_get_different_tokens(a: str, b: str) -> None:
    """The map is injective: two agents never share a subject."""
    if a != b:
        assert encode_agent_token(a) != encode_agent_token(b)


@pytest.mark.parametrize("agent_id", HOSTILE)
def test_hostile_ids_round_trip(agent_id: str) -> None:
    assert decode_agent_token(encode_agent_token(agent_id)) == agent_id


def test_plain_ids_read_as_themselves() -> None:
    assert encode_agent_token("trader-7") == "trader-7"
    assert encode_agent_token("team.alpha") == "team_2Ealpha"
    assert encode_agent_token("a_b") == "a_5Fb"
    assert encode_agent_token("") == "_"


@pytest.mark.parametrize("token", ["a.b", "_5", "_5g", "_zz", "a b", "*", "_FF", "_C3"])
def test_a_token_no_agent_encodes_to_is_refused(token: str) -> None:
    """Not of the alphabet, a broken escape, or bytes that are not UTF-8: a typed error naming the token."""
    with pytest.raises(InvalidInputError, match="agent token"):
        decode_agent_token(token)


def test_subject_of_another_prefix_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="subject"):
        agent_of_subject("other.events.a.Started")
    assert agent_of_subject("x.y.z.a_2Eb.Started", prefix="x.y.z") == "a.b"


@pytest.mark.parametrize(
    ("field", "value"),
    [("stream", "a.b"), ("stream", ""), ("subject_prefix", "a.*"), ("subject_prefix", "a..b"), ("ack_timeout_s", 0)],
)
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidInputError, match=field):
        RelaySettings(**{field: value})  # type: ignore[arg-type]
