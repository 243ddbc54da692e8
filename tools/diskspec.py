"""`--disk` specifications, after xl's disk= line: how one image is attached.

    IMAGE[,key=value|flag]...

keys (defaults first):
    type=xenbus|ioemu     xenbus: a Xen PV disk served by blkback (falls back to
                          emulated IDE when no backend connects in time);
                          ioemu: the emulated IDE disk only
    path=bounce|direct    PV data path: the one granted bounce page, or the caller's
                          own pages granted, persistently (type=xenbus only)
    access=rw|ro          ro attaches the disk write-protected; the flags `ro` and
                          `read-only` say the same
    writes=overlay|persist
                          overlay keeps guest writes in memory (the image is never
                          modified); persist writes them through; the flag `persist`
                          says the same
    format=raw            the only image format
    target=IMAGE          the image, when it is not given first

Parsing is deterministic and strict: an unknown key, a bad value, a key given twice or
a key that does not apply to the type is an error naming the key.
"""
import dataclasses

TYPES = ("xenbus", "ioemu")
PATHS = ("bounce", "direct")
ACCESS = ("rw", "ro")
WRITES = ("overlay", "persist")
FLAGS = {"ro": ("access", "ro"), "read-only": ("access", "ro"), "rw": ("access", "rw"),
         "persist": ("writes", "persist")}


class DiskSpecError(ValueError):
    """A malformed --disk value (the message names the bad key)."""


@dataclasses.dataclass(frozen=True)
class DiskSpec:
    image: str
    type: str = "xenbus"
    path: str = "bounce"
    access: str = "rw"
    writes: str = "overlay"

    @property
    def read_only(self):
        return self.access == "ro"

    @property
    def persist(self):
        return self.writes == "persist"

    def describe(self):
        parts = [self.image, f"type={self.type}"]
        if self.type == "xenbus":
            parts.append(f"path={self.path}")
        parts += [f"access={self.access}", f"writes={self.writes}"]
        return ",".join(parts)


_CHOICES = {"type": TYPES, "path": PATHS, "access": ACCESS, "writes": WRITES, "format": ("raw",)}


def parse_disk_spec(text, defaults=None):
    """DiskSpec from an --disk value; raises DiskSpecError naming what is wrong.

    defaults: values for the keys path, access and writes that the spec does not give
    (pvboot boot's --pv-path, --read-only and --persist); without them the defaults
    above."""
    if not text or not text.strip():
        raise DiskSpecError("--disk: empty specification")
    items = [item.strip() for item in text.split(",")]
    values = {}
    image = None
    for index, item in enumerate(items):
        if not item:
            raise DiskSpecError(f"--disk {text!r}: empty item")
        if "=" in item:
            key, _, value = item.partition("=")
            key, value = key.strip(), value.strip()
        elif item in FLAGS:
            key, value = FLAGS[item]
        elif index == 0:
            image = item
            continue
        else:
            raise DiskSpecError(f"--disk {text!r}: unknown key {item!r}")
        if key == "target":
            if image is not None:
                raise DiskSpecError(f"--disk {text!r}: key 'target' given but the image is already {image!r}")
            if not value:
                raise DiskSpecError(f"--disk {text!r}: key 'target' needs an image path")
            image = value
            continue
        if key not in _CHOICES:
            raise DiskSpecError(f"--disk {text!r}: unknown key {key!r}")
        if key in values:
            raise DiskSpecError(f"--disk {text!r}: key {key!r} given twice")
        if value not in _CHOICES[key]:
            raise DiskSpecError(f"--disk {text!r}: key {key!r} must be one of "
                                f"{', '.join(_CHOICES[key])}, not {value!r}")
        values[key] = value
    if image is None:
        raise DiskSpecError(f"--disk {text!r}: no image (give it first or as target=IMAGE)")
    values.pop("format", None)
    if values.get("type") == "ioemu" and "path" in values:
        raise DiskSpecError(f"--disk {text!r}: key 'path' applies to type=xenbus only")
    for key, value in (defaults or {}).items():
        if key not in ("path", "access", "writes") or value not in _CHOICES[key]:
            raise ValueError(f"bad default {key}={value!r}")
        if key == "path" and values.get("type") == "ioemu":
            continue
        values.setdefault(key, value)
    return DiskSpec(image=image, **values)
