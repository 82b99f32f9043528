"""The spool on a real full or read-only file system (a tiny tmpfs), with PostgreSQL cut through a proxy
(issue 11, item 3): the change the spool cannot keep is refused, never acknowledged, and the host is never
left cut off once the store answers.

Mounting needs root, as CI has on this machine; elsewhere these tests are skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

import pytest
from spool_support import Open, through
from support import TcpProxy, wait_for

from itertrack.domain import PerformanceTracker, StoreUnavailableError

pytestmark = pytest.mark.postgres


@pytest.fixture
def tiny_mount(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of its own, unmounted afterwards."""
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("mounting a tmpfs needs root (CI runs these as root)")
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> None:
    """Write a filler file until the file system has no room left."""
    with contextlib.suppress(OSError), (mount / "filler").open("wb", buffering=0) as filler:
        while True:
            filler.write(b"\0" * 4096)
            os.fsync(filler.fileno())
    probe = mount / "probe"
    with pytest.raises(OSError, match="No space left") as full:
        probe.write_bytes(b"\0" * 8192)
    assert full.value.errno == errno.ENOSPC


def stores(host: PerformanceTracker, iid: UUID, tokens: int) -> Callable[[], bool]:
    """A condition: the host's next change of the iteration is taken (not refused for the spool's sake)."""

    def taken() -> bool:
        try:
            host.update_metrics(iid, {"analysis_tokens": tokens})
        except StoreUnavailableError:
            return False
        return True

    return taken


def drained(host: PerformanceTracker, iid: UUID) -> Callable[[], bool]:
    """A condition: no change of the iteration waits in the host's spool. While the store is coming back a read
    of an iteration this process has not loaded may still be refused (`StoreUnavailableError`, seen once in CI
    right after a change had gone through): not drained yet."""

    def done() -> bool:
        try:
            return host.get_iteration(iid).spooled_changes == 0
        except StoreUnavailableError:
            return False

    return done


def refused_then_stored(host_open: Open, store: str, proxy: TcpProxy, make_unusable: object) -> None:
    host = host_open(through(store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "y"})
    iid = host.start_iteration("agent-1", 1)
    assert callable(make_unusable)
    make_unusable()
    proxy.cut()
    with pytest.raises(StoreUnavailableError, match="spool"):
        host.update_metrics(iid, {"analysis_tokens": 1})  # neither stored nor kept: refused, not acknowledged
    proxy.start()
    wait_for(stores(host, iid, 2), 30, "the host's changes to be stored again once PostgreSQL answers")
    assert host.get_iteration(iid).metrics == {"analysis_tokens": 2}  # the refused change was not kept either


def test_a_full_spool_file_system_refuses_the_change_and_the_host_goes_on_once_the_store_answers(
    pg_store: str, proxy: TcpProxy, open_tracker: Open, tiny_mount: Path
) -> None:
    store = pg_store.split("&spool=", 1)[0] + f"&spool={tiny_mount / 'spool.db'}"
    refused_then_stored(open_tracker, store, proxy, lambda: fill(tiny_mount))


def test_a_read_only_spool_file_system_refuses_the_change_and_the_host_goes_on_once_the_store_answers(
    pg_store: str, proxy: TcpProxy, open_tracker: Open, tiny_mount: Path
) -> None:
    store = pg_store.split("&spool=", 1)[0] + f"&spool={tiny_mount / 'spool.db'}"

    def read_only() -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(tiny_mount)], check=True)

    refused_then_stored(open_tracker, store, proxy, read_only)


def test_a_spool_that_fills_during_an_outage_still_drains_once_the_store_answers(
    pg_store: str, proxy: TcpProxy, open_tracker: Open, tiny_mount: Path
) -> None:
    """What was kept before the disk filled lands once; the change the full disk refused was never acknowledged;
    and the iteration's later changes are stored once the store answers, disk still full."""
    store = pg_store.split("&spool=", 1)[0] + f"&spool={tiny_mount / 'spool.db'}"
    host = open_tracker(through(store, proxy), migrate=True, env={"ITERTRACK_FORWARD": "y"})
    iid = host.start_iteration("agent-1", 1)
    proxy.cut()
    for _ in range(5):
        host.update_metrics(iid, {"analysis_tokens": 1})  # kept in the spool
    fill(tiny_mount)
    with pytest.raises(StoreUnavailableError, match="spool"):
        host.update_metrics(iid, {"analysis_tokens": 100})
    proxy.start()
    wait_for(stores(host, iid, 10), 60, "the iteration's changes to be stored again")
    wait_for(drained(host, iid), 60, "the spool to drain")
    assert host.get_iteration(iid).metrics["analysis_tokens"] % 10 == 5  # the 5 kept, once; not the refused 100
