"""The package version, in a leaf module: library modules import it without importing the ``nas`` package."""

__version__ = "0.1.0"
