"""`python -m pvboot.emu.xen.blkback`: run the backend process (see main.py)."""
import sys

from pvboot.emu.xen.blkback.main import main

sys.exit(main())
