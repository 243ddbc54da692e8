"""``python -m pvboot.emu.xen.xenstored --socket PATH``: run the daemon standalone."""
import sys

from .cli import main

sys.exit(main())
