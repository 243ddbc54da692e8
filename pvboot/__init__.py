"""pvboot: boot, trace and test x86 BIOS boot code on an emulated PC whose BIOS
reaches its disks through a Xen PV block frontend.

pip installs the card's top-level folders (firmware/, emu/, roms/, tools/) as the
subpackages of this one package. In a source checkout pvboot/emu, pvboot/firmware, ...
are links to them, so a clean clone has the installed layout; where a checkout has no
links (git's core.symlinks off) the checkout's root is added to the package path.
"""
import os as _os

_HERE = _os.path.dirname(_os.path.abspath(__file__))
_CHECKOUT = _os.path.dirname(_HERE)
if (not _os.path.isdir(_os.path.join(_HERE, "firmware"))
        and _os.path.isfile(_os.path.join(_CHECKOUT, "firmware", "int13.py"))):
    __path__.append(_CHECKOUT)
