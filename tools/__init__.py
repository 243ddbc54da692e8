"""pvboot's command line, the boot runner, and host-side tools (demo disk, image builders)."""
