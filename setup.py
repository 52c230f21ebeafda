"""The build of the concentrator's wheel (everything else is in pyproject.toml): the data files the package reads
at run time — include/sql, xsd, expectations, templates, data, which stay next to the package in the repository —
are copied into the built package as rpu/_data/ (rpu.resources finds them there)."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA_DIRS = ("sql", "xsd", "expectations", "templates", "data")   # rpu.resources.DATA_DIRS


class BuildWithData(build_py):
    def run(self):
        super().run()
        if self.editable_mode:        # an editable install reads them from include/ directly
            return
        target = Path(self.build_lib) / "rpu" / "_data"
        for name in DATA_DIRS:
            shutil.copytree(Path("include") / name, target / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithData})
