"""ilif.models."""
