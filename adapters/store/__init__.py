"""Stores: the memory, SQLite and PostgreSQL recorders, store URLs, the event mapper and the iteration-record rows."""
