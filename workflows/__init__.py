"""Workflows: the achievement lifecycle entity, its proof-of-concept child, the annual report."""
