"""Built-in hairnet plugin (work in progress)."""
