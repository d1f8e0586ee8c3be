"""vdi-broker: assigns virtual desktops to staff working from home or in the field."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vdi-broker")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
