"""core.cli.main: see the Architecture section of the README."""
