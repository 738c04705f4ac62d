"""Product benchmarks: each module prints its figures and writes them as JSON (bench/results/ by default).

Run one as `pinsage bench NAME [ARGS]` (an installed package: `python -m bench.NAME`) or, from a checkout, as
`.venv/bin/python bench/NAME.py [ARGS]`. Modules whose names start with an underscore are helpers, not benchmarks.
"""
