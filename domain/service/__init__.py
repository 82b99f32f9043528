"""The application service: the tracker (load, apply, save with conflict retries), its ports and the learning flow."""
