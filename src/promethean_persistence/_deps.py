"""Optional dependencies are imported at first use and fail with the extra to install."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from ._errors import MissingDependencyError


def missing(module: str, *, extra: str, driver: str) -> MissingDependencyError:
    """The MissingDependencyError for ``module`` needed by ``driver``: it names
    ``pip install '...[extra]'`` with ``extra``.
    """
    return MissingDependencyError(
        f"The {driver!r} driver needs the {module.split('.')[0]!r} package, which is not "
        f"installed. Install it with: pip install 'promethean-persistence[{extra}]'",
        driver=driver,
    )


def require(module: str, *, extra: str, driver: str) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming ``driver`` and
    ``pip install '...[extra]'`` with ``extra``. Returns the module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name and exc.name != module and not module.startswith(exc.name + "."):
            raise  # the package is there but broken: keep the real cause
        raise missing(module, extra=extra, driver=driver) from None


def check_installed(*modules: str, extra: str, driver: str) -> None:
    """Raise MissingDependencyError if one of ``modules`` is absent, without importing anything;
    the message names ``driver`` and the extra ``extra`` to install.
    """
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise missing(module, extra=extra, driver=driver)
