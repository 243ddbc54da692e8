"""Disk specifications, after xl's disk= line: how one image is attached, from the
command line (`--disk`) to the backend (which reads the same type back from xenstore).

    [PREFIX:]IMAGE[,key=value|flag]...

keys (defaults first):
    type=xenbus|ioemu     xenbus: a Xen PV disk served by blkback (falls back to
                          emulated IDE when no backend connects in time);
                          ioemu: the emulated IDE disk only
    path=bounce|direct    PV data path: the one granted bounce page, or the caller's
                          own pages granted, persistently (type=xenbus only)
    access=rw|ro          ro attaches the disk write-protected; the flags `ro` and
                          `read-only` say the same
    writes=overlay|persist
                          overlay sends guest writes to a throwaway copy-on-write
                          layer (the image is never modified); persist writes them
                          into the image through its format; the flag `persist` says
                          the same
    format=FMT            raw, qcow2, vmdk, vdi, vhdx, vpc (xl's `vhd` is vpc) or
                          qcow; without it the format is read from the image's header
    devtype=disk|cdrom    a CD-ROM is read-only; the flag `cdrom` and xl's vdev form
                          `hdc:cdrom` say the same
    vdev=NAME[:cdrom]     xl's virtual device name (recorded; the drive order is the
                          order of the --disk options)
    xl's positional form  IMAGE,FORMAT,VDEV,ACCESS (e.g. a.iso,raw,hdc,r,cdrom): a bare
                          format name, device name, r or w
    target=IMAGE          the image, when it is not given first

xl's legacy prefixes name the format: `tap:aio:`, `aio:`, `raw:`, `file:`, `phy:` (raw),
`tap:qcow2:`, `qcow2:`, `tap:qcow:`, `qcow:`, `tap:vhd:`, `vhd:` (vpc), and the QEMU
names `vmdk:`, `vdi:`, `vhdx:`, `vpc:`.  A comma inside
the image path is written `,,` (QEMU's escape).

Parsing is deterministic and strict: an unknown key, a bad value, a key given twice or
a key that does not apply to the type is an error naming the key.
"""
import dataclasses
import re

TYPES = ("xenbus", "ioemu")
PATHS = ("bounce", "direct")
ACCESS = ("rw", "ro")
WRITES = ("overlay", "persist")
DEVTYPES = ("disk", "cdrom")
# QEMU block driver names pvboot serves; raw goes straight to the file, the others
# through the QEMU block layer.
FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc", "qcow")
FORMAT_ALIASES = {"vhd": "vpc", "aio": "raw"}
FLAGS = {"ro": ("access", "ro"), "read-only": ("access", "ro"), "rw": ("access", "rw"),
         "r": ("access", "ro"), "w": ("access", "rw"),
         "persist": ("writes", "persist"), "cdrom": ("devtype", "cdrom")}
# xl's legacy "format:" prefixes (after an optional "tap:" or "tap2:").
# The backend reads the QEMU names back from xenstore's params (libxl's qdisk form).
PREFIXES = {"aio": "raw", "raw": "raw", "file": "raw", "phy": "raw", "qcow2": "qcow2",
            "qcow": "qcow", "vhd": "vpc", "vpc": "vpc", "vmdk": "vmdk", "vdi": "vdi",
            "vhdx": "vhdx"}
_VDEV = re.compile(r"^(?:xvd|hd|sd)[a-z]+[0-9]*$")


class DiskSpecError(ValueError):
    """A malformed disk specification (the message names the bad key)."""


@dataclasses.dataclass(frozen=True)
class DiskSpec:
    image: str
    type: str = "xenbus"
    path: str = "bounce"
    access: str = "rw"
    writes: str = "overlay"
    format: str = None             # None: read it from the image's header
    devtype: str = "disk"
    vdev: str = None

    @property
    def read_only(self):
        return self.access == "ro"

    @property
    def persist(self):
        return self.writes == "persist"

    @property
    def cdrom(self):
        return self.devtype == "cdrom"

    def describe(self):
        """The spec as text that parses back to it (commas in the path doubled)."""
        parts = [self.image.replace(",", ",,"), f"type={self.type}"]
        if self.type == "xenbus":
            parts.append(f"path={self.path}")
        parts += [f"access={self.access}", f"writes={self.writes}"]
        if self.format is not None:
            parts.append(f"format={self.format}")
        if self.devtype != "disk":
            parts.append(f"devtype={self.devtype}")
        if self.vdev is not None:
            parts.append(f"vdev={self.vdev}")
        return ",".join(parts)


_CHOICES = {"type": TYPES, "path": PATHS, "access": ACCESS, "writes": WRITES,
            "format": FORMATS + tuple(FORMAT_ALIASES), "devtype": DEVTYPES}


def split_items(text):
    """The comma-separated items of a spec; `,,` is a literal comma (QEMU's escape)."""
    items, current, i = [], [], 0
    while i < len(text):
        if text[i] == ",":
            if text[i + 1:i + 2] == ",":
                current.append(",")
                i += 2
                continue
            items.append("".join(current))
            current = []
        else:
            current.append(text[i])
        i += 1
    items.append("".join(current))
    return items


def split_prefix(image):
    """(format or None, path) for an image with an xl legacy prefix such as tap:qcow2:."""
    rest = image
    for tap in ("tap:", "tap2:"):
        if rest.startswith(tap):
            rest = rest[len(tap):]
            break
    name, sep, path = rest.partition(":")
    if sep and name in PREFIXES and path:
        return PREFIXES[name], path
    return None, image


def normalize_format(value):
    """QEMU's driver name for a format= value (xl's vhd is vpc); ValueError if unknown."""
    value = FORMAT_ALIASES.get(value, value)
    if value not in FORMATS:
        raise ValueError(f"unknown image format {value!r} (use one of {', '.join(FORMATS)})")
    return value


def parse_disk_spec(text, defaults=None):
    """DiskSpec from a --disk value; raises DiskSpecError naming what is wrong.

    defaults: values for the keys path, access and writes that the spec does not give
    (pvboot boot's --pv-path, --read-only and --persist); without them the defaults
    above."""
    if not text or not text.strip():
        raise DiskSpecError("--disk: empty specification")
    values = {}
    image = None
    for index, item in enumerate(split_items(text)):
        item = item.strip()
        if not item:
            raise DiskSpecError(f"--disk {text!r}: empty item")
        if "=" in item and (index > 0 or item.partition("=")[0].strip() in _CHOICES
                            or item.startswith(("target=", "vdev="))):
            key, _, value = item.partition("=")
            key, value = key.strip(), value.strip()
        elif index == 0:
            image = item            # the first item is the image, whatever it looks like
            continue
        elif item in FLAGS:
            key, value = FLAGS[item]
        elif item in _CHOICES["format"]:
            key, value = "format", item        # xl's positional TARGET,FORMAT,VDEV,ACCESS
        elif _VDEV.match(item) or (item.endswith(":cdrom") and _VDEV.match(item[:-len(":cdrom")])):
            key, value = "vdev", item
        else:
            raise DiskSpecError(f"--disk {text!r}: unknown key {item!r}")
        if key == "target":
            if image is not None:
                raise DiskSpecError(f"--disk {text!r}: key 'target' given but the image is already {image!r}")
            if not value:
                raise DiskSpecError(f"--disk {text!r}: key 'target' needs an image path")
            image = value
            continue
        if key == "vdev":
            name, _, suffix = value.partition(":")
            if not _VDEV.match(name) or suffix not in ("", "cdrom"):
                raise DiskSpecError(f"--disk {text!r}: key 'vdev' must be a name like xvda, hdc "
                                    f"or hdc:cdrom, not {value!r}")
            if "vdev" in values:
                raise DiskSpecError(f"--disk {text!r}: key 'vdev' given twice")
            values["vdev"] = name
            if suffix:
                _set(values, "devtype", "cdrom", text)
            continue
        if key not in _CHOICES:
            raise DiskSpecError(f"--disk {text!r}: unknown key {key!r}")
        if value not in _CHOICES[key]:
            raise DiskSpecError(f"--disk {text!r}: key {key!r} must be one of "
                                f"{', '.join(_CHOICES[key])}, not {value!r}")
        _set(values, key, value, text)
    if image is None and values.get("devtype") == "cdrom":
        image = ""                  # xl: a CD drive may be empty
    if image is None:
        raise DiskSpecError(f"--disk {text!r}: no image (give it first or as target=IMAGE)")
    prefix_format, image = split_prefix(image)
    if "format" in values:
        values["format"] = normalize_format(values["format"])
    if prefix_format is not None:
        if values.get("format", prefix_format) != prefix_format:
            raise DiskSpecError(f"--disk {text!r}: the prefix says format {prefix_format}, key "
                                f"'format' says {values['format']}")
        values["format"] = prefix_format
    if values.get("type") == "ioemu" and "path" in values:
        raise DiskSpecError(f"--disk {text!r}: key 'path' applies to type=xenbus only")
    if values.get("devtype") == "cdrom":
        # xl: a CD-ROM is read-only whatever else is said.
        if values.get("access") == "rw" or values.get("writes") == "persist":
            raise DiskSpecError(f"--disk {text!r}: a cdrom is read-only (no access=rw or persist)")
        values["access"] = "ro"
        values["writes"] = "overlay"
    for key, value in (defaults or {}).items():
        if key not in ("path", "access", "writes") or value not in _CHOICES[key]:
            raise ValueError(f"bad default {key}={value!r}")
        if key == "path" and values.get("type") == "ioemu":
            continue
        values.setdefault(key, value)
    return DiskSpec(image=image, **values)


def _set(values, key, value, text):
    if key in values and not (key == "devtype" and values[key] == value):
        raise DiskSpecError(f"--disk {text!r}: key {key!r} given twice")
    values[key] = value
