"""Placeholder until the whole-run secret leak check lands (issue 6)."""
