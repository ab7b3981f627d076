"""Seeded generator of the code task suites."""
