"""The registry of shared pools survives a lease released from inside `acquire` on the same thread (as the garbage
collector does when it finalises an abandoned store while a new pool is being opened)."""

from __future__ import annotations

from itertrack.adapters.store.shared_pools import SharedPools


def test_a_lease_released_while_another_pool_opens_does_not_hang() -> None:
    """Found in CI: `acquire` held the registry's lock while opening a pool, a finaliser released another lease on
    the same thread, and that release waited for the lock for ever. Now it closes the other pool at once."""
    pools: SharedPools[list[str]] = SharedPools()
    closed: list[str] = []
    old = pools.acquire("old", lambda: ["old"], lambda r: closed.append(r[0]))

    def open_new() -> list[str]:
        old.release()  # what an Application.__del__ run by the collector here does
        return ["new"]

    new = pools.acquire("new", open_new, lambda r: closed.append(r[0]))
    assert closed == ["old"]
    assert (pools.users("old"), pools.users("new")) == (0, 1)
    new.release()
    assert closed == ["old", "new"]
