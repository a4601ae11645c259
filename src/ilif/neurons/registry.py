"""The one registry of neurons: ``@register_neuron(name, **preset)`` and the functions reading it.

Everything that lists or builds neurons by name (``create_neuron``, ``create_model``, the CLI's
choices and help, the sweep presets, the energy meter) reads this registry, so a neuron defined
and registered in a user's own module is usable everywhere once that module is imported
(``ilif train --import MODULE``). Adding a neuron: docs/neurons.md, "Adding a neuron".
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from ilif.neurons.base import Neuron

N = TypeVar("N", bound=type[Neuron])

_NAME = re.compile(r"^[a-z][a-z0-9_.+-]*$")
# name -> (class, preset constructor arguments, read-only), in registration order
_REGISTRY: dict[str, tuple[type[Neuron], Mapping[str, Any]]] = {}


def register_neuron(name: str, **preset: Any) -> Callable[[N], N]:
    """Class decorator: make the :class:`~ilif.neurons.Neuron` subclass available as ``name``.

    ``preset`` registers a variant, a name whose constructor arguments are preset (the caller's
    arguments win), e.g. ``@register_neuron("ilif-mpiu", ciu=False)``; stack decorators for
    several names. The first registration without a preset sets the class's ``kind`` (the label
    of its layers in the monitors and the energy meter) unless the class sets one itself.
    Registering a name again with another class is an error; re-running the same module (the
    same class name in the same module) replaces the entry.
    """
    key = str(name).lower()
    if not _NAME.match(key):
        raise ValueError(
            f"register_neuron: name {name!r} must start with a letter and hold only lower-case "
            "letters, digits and . _ + -"
        )

    def decorate(cls: N) -> N:
        if not (isinstance(cls, type) and issubclass(cls, Neuron)):
            raise TypeError(
                f"register_neuron({key!r}) decorates a subclass of ilif.neurons.Neuron, "
                f"got {cls!r}"
            )
        if key in _REGISTRY:
            old, _ = _REGISTRY[key]
            if (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
                raise ValueError(
                    f"register_neuron: the name {key!r} is already taken by "
                    f"{old.__module__}.{old.__qualname__}; choose another name"
                )
        _REGISTRY[key] = (cls, MappingProxyType(dict(preset)))
        if not preset and not cls.__dict__.get("kind"):
            cls.kind = key
        return cls

    return decorate


def neuron_names(variants: bool = True) -> list[str]:
    """Every registered name in registration order (``variants=False``: the names registered
    without preset arguments, one per neuron class)."""
    return [name for name, (_, preset) in _REGISTRY.items() if variants or not preset]


def _unknown(name: str) -> ValueError:
    return ValueError(
        f"unknown neuron {name!r}; valid names: {', '.join(_REGISTRY)}. A neuron of your own "
        "must be registered first (@ilif.register_neuron) by importing its module, e.g. "
        "`ilif train --import MODULE`"
    )


def neuron_entry(name: str) -> tuple[type[Neuron], dict[str, Any]]:
    """The class and preset constructor arguments registered as ``name``."""
    key = str(name).lower()
    if key not in _REGISTRY:
        raise _unknown(name)
    cls, preset = _REGISTRY[key]
    return cls, dict(preset)


def neuron_class(name: str) -> type[Neuron]:
    """The class registered as ``name``."""
    return neuron_entry(name)[0]


def create_neuron(name: str, **kwargs: Any) -> Neuron:
    """A neuron by registered name (``lif``, ``ilif``, ``ilif-mpiu`` = LIF+MPIU, ``ilif-ciu`` =
    LIF+CIU, ``clif``, ``plif``, ``alif``, ``mpbn``, and any registered by the user); keyword
    arguments go to its constructor, over the name's preset ones."""
    cls, preset = neuron_entry(name)
    return cls(**{**preset, **kwargs})


def registry_view() -> Mapping[str, tuple[type[Neuron], Mapping[str, Any]]]:
    """A read-only live view of the registry: name -> (class, preset arguments)."""
    return MappingProxyType(_REGISTRY)


def import_modules(modules: Iterable[str]) -> None:
    """Import each module (a dotted name, or a path to a ``.py`` file) so that the neurons it
    registers become available by name. The working directory is searched for dotted names."""
    for spec in modules:
        spec = str(spec).strip()
        if not spec:
            continue
        path = Path(spec)
        if spec.endswith(".py"):
            if not path.is_file():
                raise ValueError(f"--import: file not found: {spec}")
            name = path.stem
            if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(
                path.resolve()
            ):
                continue
            loader = importlib.util.spec_from_file_location(name, path.resolve())
            if loader is None or loader.loader is None:
                raise ValueError(f"--import: cannot import {spec}")
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module
            loader.loader.exec_module(module)
            continue
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as err:
            if err.name and spec.startswith(err.name):
                raise ValueError(
                    f"--import: no module named {spec!r} (give a module on the Python path, "
                    "run from its folder, or pass the path of its .py file)"
                ) from None
            raise
