"""
saltext-eos: EOS storage operations and cluster bootstrap as a Salt extension.

Installing the package registers the ``salt.loader`` entry point ``saltext.eos``; Salt then
finds every loader folder below this package (``modules``, ``states``, ``beacons``, ...).
"""

import pathlib

__version__ = "0.1.0"

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parent
