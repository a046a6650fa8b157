"""JupyterHub configuration of QHub's hub.

Mounted from the hub ConfigMap together with its helper modules (qhub_hub_*.py). Settings come from the hub
Secret (values.yaml written by the chart, generated tokens) and from environment variables the Deployment sets;
see qhub_hub_values.py. Nothing here is specific to one installation: change values, not this file.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from qhub_hub_auth import configure_auth  # noqa: E402
from qhub_hub_setup import (  # noqa: E402
    apply_extra_config,
    configure_groups,
    configure_hub,
    configure_services,
)
from qhub_hub_spawner import configure_spawner  # noqa: E402
from qhub_hub_values import load  # noqa: E402

c = get_config()  # noqa: F821 - provided by traitlets when it runs this file
settings = load()
configure_hub(c, settings)
configure_auth(c, settings)
configure_groups(c, settings)
configure_services(c, settings)
configure_spawner(c, settings)
apply_extra_config(c, settings)
