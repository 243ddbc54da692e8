"""The tests' handle on the QEMU + SeaBIOS reference: tools/qemu.py, re-exported.

run_qemu(image, floppy=False, timeout=..., keys=..., keys_after=...) returns
(exit_value, serial_text); see tools/qemu.py for the rest (run(), QemuRun).
"""
from pvboot.tools.qemu import (DEFAULT_TIMEOUT, QEMU, QEMU_PACKAGE, QemuError, QemuMissing, QemuRun,
                        decode_exit, qemu_available, qemu_command, run, run_qemu)

__all__ = ["DEFAULT_TIMEOUT", "QEMU", "QEMU_PACKAGE", "QemuError", "QemuMissing", "QemuRun",
           "decode_exit", "qemu_available", "qemu_command", "run", "run_qemu"]
