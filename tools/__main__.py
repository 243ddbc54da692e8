"""`python -m pvboot.tools` runs the pvboot command line."""
from pvboot.tools import console_main

console_main()
