"""Step-time benchmark: the same measurement as ``gradstep bench``.

python benchmarks/bench_step.py [--optimizers adam,sgd] [--compile] [--json out.json]
"""

import sys

from gradstep.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
