"""hairlab.models."""
