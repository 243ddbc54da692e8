"""`pvboot compare --with-qemu`: the same images under QEMU + SeaBIOS and under
pvboot's default path, side by side; the verdict compares what the guest wrote to
COM1 byte for byte and how each run ended (tools/sides.py).  Exit codes: 0 agree,
1 differ, 2 usage or input error (QEMU missing included), 4 pvboot internal error.
"""
import concurrent.futures
import dataclasses
import json
import threading

from pvboot.tools import qemu, runner
from pvboot.tools.sides import (CRASHED, EXIT_AGREE, EXIT_DIFFER, NO_END, Side, check_inputs,
                                endings_agree, first_difference, pvboot_side, qemu_disk_args,
                                qemu_keys, qemu_side, unified_diff)


@dataclasses.dataclass
class Comparison:
    images: list
    floppy: str
    qemu: Side
    pvboot: Side
    report: str = ""           # pvboot's crash report, if any

    @property
    def serial_equal(self):
        return self.qemu.serial == self.pvboot.serial

    @property
    def endings_equal(self):
        return endings_agree(self.qemu, self.pvboot)

    @property
    def agree(self):
        return self.serial_equal and self.endings_equal

    @property
    def exit_code(self):
        return EXIT_AGREE if self.agree else EXIT_DIFFER

    def diff(self):
        return "" if self.serial_equal else unified_diff(self.qemu.serial, self.pvboot.serial)

    def verdict(self):
        target = " ".join([*self.images, *([f"--floppy {self.floppy}"] if self.floppy else [])])
        lines = []
        if self.agree:
            both = (f", both {self.qemu.describe(detail=False)}"
                    if self.qemu.ended == self.pvboot.ended else "")
            lines.append(f"pvboot compare: AGREE: {target}: identical serial output "
                         f"({len(self.qemu.serial)} bytes){both}")
        else:
            what = []
            if not self.serial_equal:
                a, b = self.qemu.serial, self.pvboot.serial
                at, line = first_difference(a, b)
                text = f"serial output differs from byte {at} (line {line})"
                if at == min(len(a), len(b)):
                    shorter = "qemu+seabios" if len(a) < len(b) else "pvboot"
                    text += f": {shorter}'s is a prefix of the other"
                    if NO_END in (self.qemu.ended, self.pvboot.ended):
                        text += " (a run that did not end was cut off at its timeout)"
                what.append(text)
            if not self.endings_equal:
                what.append("the runs ended differently")
            lines.append(f"pvboot compare: DIFFER: {target}: {'; '.join(what)}")
        for side in (self.qemu, self.pvboot):
            lines.append(f"  {side.name + ':':14s}{side.describe()}; "
                         f"{len(side.serial)} bytes of serial in {side.elapsed:.2f} s")
        return "\n".join(lines)

    def to_json(self):
        return {"verdict": "agree" if self.agree else "differ", "exit_code": self.exit_code,
                "images": self.images, "floppy": self.floppy,
                "serial_equal": self.serial_equal, "endings_equal": self.endings_equal,
                "qemu": self.qemu.to_json(), "pvboot": self.pvboot.to_json(),
                "diff": self.diff(), "report": self.report}


def compare(images, floppy=None, boot_from=None, memory_mib=64, timeout=qemu.DEFAULT_TIMEOUT,
            keys="", keys_after=None, driver="xen", qemu_disk="ide"):
    """Boot under both and compare; returns a Comparison.  Raises runner.InputError for
    unusable input and qemu.QemuError when QEMU is missing or refuses to start."""
    boot_from = check_inputs(images, floppy, boot_from)
    key_names = qemu_keys(keys, keys_after)
    qemu_disks, qemu_args = qemu_disk_args(images, qemu_disk)
    if not qemu.qemu_available():
        raise qemu.QemuMissing()

    # The two boots are independent (QEMU works on a snapshot of the images, pvboot on
    # its own overlay): run them side by side.
    cancel = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        reference = pool.submit(
            qemu.run, qemu_disks, floppy, boot=boot_from,
            # pvboot's memory is RAM above 1 MiB; QEMU's -m counts from address 0.
            memory_mb=memory_mib + 1, timeout=timeout, keys=key_names, keys_after=keys_after,
            snapshot=True, cancel=cancel, extra_args=qemu_args)
        try:
            result = runner.boot(list(images), floppy=floppy, boot_from=boot_from,
                                 memory_mib=memory_mib, timeout=timeout, keys=keys,
                                 driver=driver)
        except BaseException:
            cancel.set()           # pvboot could not run: do not wait for QEMU's timeout
            raise
        finally:
            qemu_run = reference.result()
    return Comparison(list(images), floppy, qemu_side(qemu_run), pvboot_side(result),
                      result.stop.report)


def run_with_qemu(args, out, err):
    """`pvboot compare --with-qemu` (args from tools/compare.py); returns the exit code."""
    comparison = compare(args.images, floppy=args.floppy, boot_from=args.boot,
                         memory_mib=args.memory, timeout=args.timeout, keys=args.keys,
                         keys_after=args.keys_after, driver=args.driver or "xen",
                         qemu_disk=args.qemu_disk)
    if comparison.pvboot.reason == "firmware-error":
        print(f"pvboot compare: pvboot internal error: {comparison.pvboot.detail}", file=err)
        return runner.EXIT_INTERNAL
    if args.json:
        print(json.dumps(comparison.to_json(), indent=2), file=out)
        return comparison.exit_code
    print(comparison.verdict(), file=out)
    if not comparison.serial_equal:
        print(comparison.diff(), file=out)
    if comparison.report and comparison.pvboot.ended == CRASHED:
        print(comparison.report, file=err)
    return comparison.exit_code
