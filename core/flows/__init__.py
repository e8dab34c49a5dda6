"""core.flows: see the Architecture section of the README."""
