"""Where desktops come from: libvirt, a static list, or simulated listeners."""
