"""The simulated learning loop of `itertrack demo` and its deterministic fakes."""
