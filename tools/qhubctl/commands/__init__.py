"""Command implementations: parse options, load the config, call one library function, report."""
