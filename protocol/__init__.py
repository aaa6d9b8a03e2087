"""The contract shared by the exporter, the coordinator and devices: pure data and math, no I/O."""

PROTOCOL_VERSION = "v1"
