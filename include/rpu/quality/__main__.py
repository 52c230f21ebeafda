"""`python -m rpu.quality --write` rewrites the committed suites (include/expectations/*.json)."""
import argparse

from rpu.quality import suites

parser = argparse.ArgumentParser(prog="python -m rpu.quality")
parser.add_argument("--write", action="store_true", help="rewrite include/expectations/*.json")
if parser.parse_args().write:
    for p in suites.write():
        print(p)
