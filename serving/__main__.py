"""`python -m serving --model-base-path serving_model/pinsage --port 8500` (the same as `pinsage serve`)."""

import argparse
import logging
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    p.add_argument("--model-base-path", required=True, help="serving_model/<name> (or serving_model/ with one model)")
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--model-name", default=None)
    p.add_argument("--poll-seconds", type=float, default=5.0)
    p.add_argument("--max-workers", type=int, default=8)
    p.add_argument("--max-batch", type=int, default=1024)
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT); one per core for throughput",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from serving.server import serve

    try:
        serve(
            args.model_base_path,
            args.port,
            model_name=args.model_name,
            poll_seconds=args.poll_seconds,
            max_workers=args.max_workers,
            max_batch=args.max_batch,
            processes=args.processes,
        )
    except (OSError, ValueError) as e:
        p.exit(1, f"python -m serving: error: {e}\n")


if __name__ == "__main__":
    main()
