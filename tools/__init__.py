"""Reusable tools that environments compose: browser, search index, code execution, SQL execution."""
