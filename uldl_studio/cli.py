"""`uldl-studio` entry point (placeholder until the CLI lands)."""
import sys


def main(argv=None) -> int:
    print("uldl-studio: CLI under construction", file=sys.stderr)
    return 0
