"""Read models built from the tracker's events."""
