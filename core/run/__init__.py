"""core.run: see the Architecture section of the README."""
