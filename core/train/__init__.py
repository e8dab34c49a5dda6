"""core.train: see the Architecture section of the README."""
