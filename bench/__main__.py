"""python -m bench [NAME|all|NAME,NAME...] [--size tiny|full]

NAME: throughput, cpu, latency, parked, report, timeskip, gateway, scaleout.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench.run import NAMES, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "what", nargs="?", default="all", help=f"{', '.join(NAMES)}, all, or a comma list"
    )
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    args = parser.parse_args()
    main(args.what, args.size)
    sys.stdout.flush()
    os._exit(0)  # sdk-python #300: the Rust core may abort at interpreter exit
