"""hairlab's Hydra config tree, installed as the ``hairlab_conf`` package (``pkg://hairlab_conf``)."""
