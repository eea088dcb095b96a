"""pivoicectl: a full-duplex voice assistant toolkit for a Raspberry Pi that never hears itself."""

__version__ = "0.1.0"
