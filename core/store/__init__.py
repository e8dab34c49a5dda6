"""core.store.database: see the Architecture section of the README."""
