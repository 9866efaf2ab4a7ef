"""Build hook: the kvdb.v1 protobuf/gRPC modules are generated from proto/ when the package is built."""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_protos  # noqa: E402


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            gen_protos.generate(os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
        else:
            gen_protos.generate(self.build_lib)


setup(cmdclass={"build_py": BuildPyWithProtos})
