"""hairlab.training."""
