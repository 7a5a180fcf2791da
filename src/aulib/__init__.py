"""aulib: offline facial Action Unit and emotion recognition."""

__version__ = "0.1.0"
