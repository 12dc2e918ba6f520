"""The optional package an optimizer is built from, imported when the job names it, with an error that
says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from trainhub.job import OPTIM_PACKAGES


def need(optim_type: str) -> ModuleType:
    module, package = OPTIM_PACKAGES[optim_type]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"optim.type {optim_type} needs the package {package}: pip install 'trainhub[optim]' "
                          f"({err})") from None
