"""ilif.train."""
