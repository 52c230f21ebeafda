"""Where the concentrator's data files are: the SQL (schema, migrations, queries), the XSD, the expectation suites,
the mail templates and the sample data.

In the repository they stay where the architecture puts them, next to the package: include/sql, include/xsd,
include/expectations, include/templates, include/data. A built wheel carries them inside the package, under
`rpu/_data/` (setup.py copies them there at build time), found through importlib.resources: `pip install .` then
`rpu validate FILE` works from any directory. Which one applies is decided once: the installed copy when the
package has one, else the checkout's directories.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DATA_DIRS = ("sql", "xsd", "expectations", "templates", "data")   # under include/ in the repository
INSTALLED = "_data"                                                 # under the package in a wheel


def _root() -> Path:
    installed = Path(str(files("rpu").joinpath(INSTALLED)))
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[1]          # include/ of a source checkout (editable install)


ROOT = _root()


def in_checkout() -> bool:
    """True when running from the repository (an editable install), False from an installed wheel."""
    return ROOT.name != INSTALLED


def path(*parts: str) -> Path:
    """A data file or directory: path("sql", "queries", "x.sql"), path("xsd", "rpu2006.xsd")…"""
    if not parts or parts[0] not in DATA_DIRS:
        raise ValueError(f"not a data directory of the package: {parts[:1]}")
    return ROOT.joinpath(*parts)
