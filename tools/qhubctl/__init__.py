"""qhubctl: deploy and operate QHub from one config file."""

__version__ = "0.1.0"
