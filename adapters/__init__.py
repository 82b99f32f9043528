"""Adapters: the composition root, settings, stores, the outage spool, read-model views, the CLI, the Claude
adapter, the demo and the HTML report, each in a room of its own."""
