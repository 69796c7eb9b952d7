"""NST methods behind one interface (``stylize.base``), created by name with ``create_method``.

Every module of this package is imported here, so a method registers itself by being a file
in this folder with a ``@register_method("name")`` class: no central list to edit. Parts shared
by several methods live in ``stylize.parts`` (a subpackage: its modules register nothing).
"""
import importlib
import pkgutil

from stylize.base import NSTMethod, configured_method, create_method, list_methods, register_method

for _module in pkgutil.iter_modules(__path__):
    if not _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["NSTMethod", "configured_method", "create_method", "list_methods", "register_method"]
