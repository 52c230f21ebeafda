"""`python -m rpu.cli …`: the `rpu` command."""
import sys

from rpu.cli import main

sys.exit(main())
