"""Isolated execution back ends behind one Sandbox protocol."""
