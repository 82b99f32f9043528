"""The analytics report rendered for people: one self-contained HTML page."""
