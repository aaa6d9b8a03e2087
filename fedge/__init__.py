"""fedge: cross-device federated learning on the stock LiteRT runtime."""

__version__ = "0.1.0"
