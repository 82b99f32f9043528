"""Read-model tables of a store, their writer, queries, catch-up runner, lock and integrity check."""
