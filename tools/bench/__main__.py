"""`python -m pvboot.tools.bench` runs the benchmark (the same as `pvboot bench`)."""
import sys

from pvboot.tools.bench.cli import main

sys.exit(main(prog="python -m pvboot.tools.bench"))
