"""The command-line options of the signer back-ends, built from what each back-end declares.

Each back-end declares its options (:class:`~provserver.signers.base.BackendOption`): on the
back-end class for ``provserver`` (command ``serve``) and ``provserver signer list`` (``list``),
on its module creator for ``provserver signer create`` (``create``). This module turns them
into click options (:func:`click_options`), picks the back-ends whose options were given when
none is named (:func:`chosen_backends`), refuses an option given for a back-end not in use
(:func:`check_foreign_options`) and turns the values given into the keyword options of a
back-end or of its module creator (:func:`backend_kwargs`). The built-in back-ends are offered,
in the order of :data:`~provserver.signers.base.SIGNER_BACKENDS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from .signers.base import (
    SIGNER_BACKENDS,
    BackendOption,
    Command,
    SignerConfigError,
    backend_class,
)

F = TypeVar("F", bound=Callable[..., Any])

_TYPES: dict[str, Any] = {  # BackendOption.kind -> click type
    "text": None,
    "path": click.Path(path_type=Path),
    "file": click.Path(path_type=Path, exists=True, dir_okay=False),
}


class MissingOptionError(SignerConfigError):
    """A back-end in use needs an option that was not given."""

    def __init__(self, backend: str, option: BackendOption) -> None:
        super().__init__(f"the {backend} signer back-end needs {option.flag} {option.required}")
        self.backend = backend
        self.option = option


def builtin_backends() -> list[str]:
    """The built-in back-end names, in the order the command lines list them."""
    return SIGNER_BACKENDS.builtin_names()


def declared_options(backend: str, command: Command) -> tuple[BackendOption, ...]:
    """The options back-end ``backend`` offers on ``command``'s command line."""
    cls = backend_class(backend)
    if command == "create":
        declared = cls.creator.cli_options if cls.creator is not None else ()
    else:
        declared = cls.cli_options
    return tuple(option for option in declared if command in option.help)


def command_options(command: Command) -> list[tuple[str, BackendOption]]:
    """(back-end, option) for every option of the built-in back-ends on ``command``."""
    found = [(name, opt) for name in builtin_backends() for opt in declared_options(name, command)]
    flags = [opt.flag for _, opt in found]
    duplicated = sorted({flag for flag in flags if flags.count(flag) > 1})
    if duplicated:
        raise SignerConfigError(
            f"signer back-ends declare {', '.join(duplicated)} twice for {command}"
        )
    return found


def click_options(command: Command) -> Callable[[F], F]:
    """Decorator: the click options of all built-in back-ends for ``command``, in order."""

    def decorate(func: F) -> F:
        for _, option in reversed(command_options(command)):
            attrs: dict[str, Any] = {"default": option.default, "help": option.help[command]}
            if _TYPES[option.kind] is not None:
                attrs["type"] = _TYPES[option.kind]
            if option.show_default:
                attrs["show_default"] = True
            if option.metavar is not None:
                attrs["metavar"] = option.metavar
            func = click.option(option.flag, **attrs)(func)
        return func

    return decorate


def _given(option: BackendOption, values: Mapping[str, Any]) -> bool:
    return option.selects and values.get(option.dest) is not None


def chosen_backends(command: Command, values: Mapping[str, Any]) -> list[str]:
    """The back-ends to use when none is named: the default ones (``hid``), then every one
    whose options are given (``values``: click parameter name -> value)."""
    names = builtin_backends()
    default = [name for name in names if backend_class(name).used_by_default]
    given = [
        name
        for name in names
        if name not in default
        and any(_given(option, values) for option in declared_options(name, command))
    ]
    return default + given


def check_foreign_options(
    command: Command, backends: Sequence[str], values: Mapping[str, Any]
) -> None:
    """Refuse (usage error) an option given for a back-end that is not in ``backends``."""
    for owner, option in command_options(command):
        if owner not in backends and _given(option, values):
            raise click.UsageError(
                f"{option.flag} applies to --backend {owner} only (backend: {', '.join(backends)})"
            )


def _secret(var: str, prompt: str) -> str:
    secret = os.environ.get(var)
    if secret:
        return secret
    value: str = click.prompt(prompt.format(var=var), hide_input=True)
    return value


def backend_kwargs(
    backend: str, command: Command, values: Mapping[str, Any], data_dir: Path
) -> dict[str, Any]:
    """The keyword options of ``backend`` (``serve``, ``list``) or of its module creator
    (``create``) from the values given on the command line.

    An option not given takes its folder in ``data_dir`` if it has one, else is left out;
    MissingOptionError if the back-end needs it. A secret option (a PIN) reads its environment
    variable, else asks for it.
    """
    kwargs: dict[str, Any] = {}
    for option in declared_options(backend, command):
        value = values.get(option.dest)
        if value is None and option.in_data_dir is not None:
            value = data_dir / option.in_data_dir
        if value is None:
            if option.required is not None:
                raise MissingOptionError(backend, option)
            continue
        if option.secret_prompt is not None:
            value = _secret(value, option.secret_prompt)
        kwargs[option.key] = value
    return kwargs
