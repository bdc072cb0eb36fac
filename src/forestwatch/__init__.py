"""forestwatch: near-real-time forest disturbance monitoring from Sentinel-2 L2A with nrt."""

__version__ = "0.1.0"
