"""qhub-config.yaml: models (the single source of truth), loading, errors and migrations."""

from qhubctl.config.loader import DEFAULT_CONFIG, dump_yaml, load_config, load_raw, parse_config
from qhubctl.config.model import CLUSTER_BLOCKS, PROVIDERS, SCHEMA_VERSION, QHubConfig

__all__ = [
    "CLUSTER_BLOCKS", "DEFAULT_CONFIG", "PROVIDERS", "SCHEMA_VERSION", "QHubConfig", "dump_yaml", "load_config",
    "load_raw", "parse_config",
]
