"""ilif.analysis."""
