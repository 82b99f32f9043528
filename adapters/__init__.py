"""Adapters: stores, the iteration-record tables, fakes for the demo, and the CLI."""
