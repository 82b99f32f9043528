"""The feed: named consumers of the event log (issue 15)."""
