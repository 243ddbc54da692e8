"""`python -m bench` runs the benchmark (the same as `pvboot bench`)."""
import sys

from bench.core import main

sys.exit(main(prog="python -m bench"))
