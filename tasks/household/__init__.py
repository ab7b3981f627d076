"""Seeded generator of the household task suites (train, test-seen, test-unseen)."""
