"""`python -m tools` runs the pvboot command line."""
from tools.cli import console_main

console_main()
