"""Seeded generator of the SQL databases and task suites."""
