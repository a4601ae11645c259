"""ilif.data."""
