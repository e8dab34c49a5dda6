"""core.analysis: see the Architecture section of the README."""
