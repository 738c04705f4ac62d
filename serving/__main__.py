"""`python -m serving --model-base-path serving_model/pinsage --port 8500` (the same as `pinsage serve`)."""

import argparse
import sys

from serving.flags import add_serve_arguments


def main(argv=None) -> int:
    p = add_serve_arguments(argparse.ArgumentParser(prog="python -m serving", description=__doc__))
    args = p.parse_args(argv)
    from serving.server import serve_from_args  # after parsing: `--help` loads no TensorFlow

    return serve_from_args(args, "python -m serving")


if __name__ == "__main__":
    sys.exit(main())
