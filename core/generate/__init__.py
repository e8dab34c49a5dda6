"""core.generate: see the Architecture section of the README."""
