"""Random ids after a fork: the child must not repeat its parent's sequence (ids come from a generator seeded
once per process, not from a system call per id: adapters/ids.py, which the composition root installs behind the
domain's id seam)."""

from __future__ import annotations

import os
from uuid import UUID

import pytest

import itertrack.adapters.bootstrap  # noqa: F401  # loading the composition root installs the adapters' ids
from itertrack.domain.model.events import new_event_id

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork only")


def test_a_forked_child_makes_ids_its_parent_never_makes() -> None:
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next 500 ids, as hex lines, then exit at once
        try:
            os.close(reader)
            os.write(writer, "\n".join(new_event_id().hex for _ in range(500)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        child = {UUID(line) for line in pipe.read().decode().split()}
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent = {new_event_id() for _ in range(500)}
    assert len(child) == 500
    assert not child & parent, "the forked child repeated its parent's ids"
