"""`python -m pvboot` runs the pvboot command line."""
from pvboot.tools import console_main

console_main()
