"""The emulated PC under the firmware: CPU, guest memory, port I/O devices and the run loop."""
