"""Household: an ALFWorld-style text world, procedurally generated."""
