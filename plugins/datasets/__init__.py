"""Built-in datasets plugin (work in progress)."""
