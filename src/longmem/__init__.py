"""longmem: teach recurrent networks long-term memory of text."""

from importlib import metadata

try:
    __version__ = metadata.version("longmem")
except metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "(not installed)"
