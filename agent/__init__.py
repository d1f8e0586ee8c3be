"""vdi-agent: reports a virtualisation host's load and desktops to the broker."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vdi-broker")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
