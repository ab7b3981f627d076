"""Task suites as data (JSONL, one folder per environment) and the seeded generators that made them."""
