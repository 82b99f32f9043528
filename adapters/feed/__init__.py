"""The feed: named consumers of the event log (stand-in on the otlp branch until the feed branch merges)."""
