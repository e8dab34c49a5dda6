"""core.views: see the Architecture section of the README."""
