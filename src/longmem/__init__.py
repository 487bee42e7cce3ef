"""longmem: teach recurrent networks long-term memory of text."""

__version__ = "0.1.0"
