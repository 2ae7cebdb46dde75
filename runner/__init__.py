"""runner: a declarative, YAML-driven order runner for Interactive Brokers."""

__version__ = "0.1.0"
