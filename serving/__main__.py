"""`python -m serving --model-base-path serving_model/pinsage --port 8500` (the same as `pinsage serve`)."""

import argparse
import sys

from serving.flags import add_serve_arguments, serve_from_args


def main(argv=None) -> int:
    p = add_serve_arguments(argparse.ArgumentParser(prog="python -m serving", description=__doc__))
    return serve_from_args(p.parse_args(argv), "python -m serving")


if __name__ == "__main__":
    sys.exit(main())
