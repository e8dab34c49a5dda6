"""core.models: see the Architecture section of the README."""
