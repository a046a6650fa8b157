"""Chart-tier tests (a package, so module names do not clash with tests/cluster)."""
