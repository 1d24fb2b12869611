"""hairlab.costmodel."""
