"""Terminal user interfaces (Textual)."""
