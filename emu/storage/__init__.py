"""Storage behind the backends: image formats through the QEMU block layer, NBD, locks."""
