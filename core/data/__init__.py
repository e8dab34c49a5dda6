"""core.data: see the Architecture section of the README."""
