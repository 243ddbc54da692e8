"""`python -m pvboot.tools` runs the pvboot command line."""
from pvboot.tools.cli import console_main

console_main()
