"""``python -m hairlab``."""

from hairlab.cli import entrypoint

entrypoint()
