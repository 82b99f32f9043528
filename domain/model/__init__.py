"""The model: the Iteration aggregate, its events, changes, phases, metrics, usage, records, state, rules and errors."""
