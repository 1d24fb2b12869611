"""hairlab's built-in plugins, installed as ``hairlab_plugins``.

Each subpackage is registered under the ``hairlab`` entry-point group in pyproject.toml,
exactly as a third-party plugin package would be; the core never imports them by name.
"""
