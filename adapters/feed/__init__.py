"""The feed: named, checkpointed consumers of the event log (issue 15)."""
