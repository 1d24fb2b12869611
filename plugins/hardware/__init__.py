"""Built-in hardware plugin (work in progress)."""
