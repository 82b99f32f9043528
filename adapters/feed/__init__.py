"""The feed: named, checkpointed consumers of the event log, and the relay to NATS JetStream."""
