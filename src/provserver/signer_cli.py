"""``provserver signer``: the command line of the signer set-up (``create`` and ``list``).

A click group named ``signer``; :mod:`provserver.cli` adds it to ``provserver``. The work is in
:mod:`provserver.signer_create` and :mod:`provserver.signer_list`; this module only turns
options, prompts and environment variables into a
:class:`~provserver.signer_create.CreateRequest` (or back-end options for ``list``) and prints
plain lines. The back-ends' own options come from their declarations
(:mod:`provserver.backend_options`). Bad input ends with click's usage error (exit 2) or one
``Error: ...`` line (exit 1), never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from atcaprov.errors import AtcaprovError

from .backend_options import (
    MissingOptionError,
    backend_kwargs,
    builtin_backends,
    check_foreign_options,
    chosen_backends,
    click_options,
)
from .paths import default_data_dir
from .root_ca import DEFAULT_ROOT_CN, root_key_is_encrypted
from .signer_create import (
    DEFAULT_CERTINFO,
    DEFAULT_DEVICE_CN,
    CreateRequest,
    DeviceSpec,
    create_signer,
)
from .signer_list import list_modules
from .signers.base import backend_class
from .signers.create import MAX_VALIDITY_YEARS, SignerSpec, parse_signer_id

_PATH = click.Path(path_type=Path)
_BACKEND = click.Choice(builtin_backends())
_YEARS = click.IntRange(0, MAX_VALIDITY_YEARS)


def _env_value(var: str, what: str) -> str:
    value = os.environ.get(var)
    if not value:
        raise click.UsageError(f"{what}: environment variable {var} is not set or empty")
    return value


def _module_password(backend: str, prompt: bool, env: str | None, none: bool) -> str | None:
    chosen = [
        n
        for n, on in (
            ("--password", prompt),
            ("--password-env", env is not None),
            ("--no-password", none),
        )
        if on
    ]
    if len(chosen) > 1:
        raise click.UsageError(f"{' and '.join(chosen)} exclude each other")
    creator = backend_class(backend).creator
    no_password = creator.no_password if creator is not None else None
    if no_password is not None and (prompt or env is not None):
        raise click.UsageError(f"{backend}: {no_password}; --password/--password-env do not apply")
    if none or no_password is not None:
        return None
    if env is not None:
        return _env_value(env, "--password-env")
    asks = creator is not None and creator.asks_password  # a real module gets a password
    if prompt or asks:
        value: str = click.prompt(
            "Signer module password", hide_input=True, confirmation_prompt=True
        )
        if not value:
            raise click.UsageError("the password is empty; use --no-password for none")
        return value
    return None


@click.group(name="signer", context_settings={"help_option_names": ["-h", "--help"]})
def signer() -> None:
    """Set up signer modules: create one (key, certificate, profile, cert info) or list them."""


@signer.command(name="create")
@click.option("--backend", type=_BACKEND, required=True, help="Where the signer key is made.")
@click.option("--name", required=True, help='Signer name, e.g. "Example ATECC508A Signer".')
@click.option(
    "--signer-id",
    default=None,
    metavar="HEX4",
    help="2-byte signer id as 4 hex digits (default: from the chip SN / key id).",
)
@click.option("--signer-org", default=None, help="Organization (O) of the signer subject.")
@click.option(
    "--validity-years",
    type=_YEARS,
    default=20,
    show_default=True,
    help="Signer certificate validity (0 = no expiry).",
)
@click.option(
    "--root-dir",
    type=_PATH,
    default=None,
    help="Make a new root CA here (root-ca.key, root-ca.crt).",
)
@click.option("--root-key", type=_PATH, default=None, help="Existing root CA key (PEM/DER).")
@click.option(
    "--root-cert", type=_PATH, default=None, help="Existing root CA certificate (PEM/DER)."
)
@click.option(
    "--root-key-password-env",
    default=None,
    metavar="VAR",
    help="Environment variable holding the password of an encrypted root key.",
)
@click.option(
    "--root-cn", default=DEFAULT_ROOT_CN, show_default=True, help="Common name of a new root CA."
)
@click.option("--root-org", default=None, help="Organization of a new root CA.")
@click.option(
    "--root-validity-years",
    type=_YEARS,
    default=0,
    show_default=True,
    help="Validity of a new root CA (0 = no expiry).",
)
@click.option(
    "--password",
    "password_prompt",
    is_flag=True,
    help="Protect the module with a password (asked twice, not echoed).",
)
@click.option(
    "--password-env",
    default=None,
    metavar="VAR",
    help="Take the module password from this environment variable.",
)
@click.option(
    "--no-password",
    is_flag=True,
    help="No module password (default for sim and pem; hid asks unless given).",
)
@click_options("create")
@click.option(
    "--device-cn",
    default=DEFAULT_DEVICE_CN,
    show_default=True,
    help="Common name of the device certificates.",
)
@click.option("--device-org", default=None, help="Organization of the device certificates.")
@click.option(
    "--device-validity-years",
    type=_YEARS,
    default=0,
    show_default=True,
    help="Device certificate validity (0 = no expiry).",
)
@click.option(
    "--data-dir",
    type=_PATH,
    default=None,
    help="Server data folder (profile goes to DATA_DIR/signers). Default: the "
    "server's per-user folder.",
)
@click.option(
    "--certinfo-out",
    type=_PATH,
    default=Path(DEFAULT_CERTINFO),
    show_default=True,
    help="Cert info file for the stations.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing cert info file or profile.")
def create(
    backend: str,
    name: str,
    signer_id: str | None,
    signer_org: str | None,
    validity_years: int,
    root_dir: Path | None,
    root_key: Path | None,
    root_cert: Path | None,
    root_key_password_env: str | None,
    root_cn: str,
    root_org: str | None,
    root_validity_years: int,
    password_prompt: bool,
    password_env: str | None,
    no_password: bool,
    device_cn: str,
    device_org: str | None,
    device_validity_years: int,
    data_dir: Path | None,
    certinfo_out: Path,
    force: bool,
    **backend_values: Any,
) -> None:
    """Make a signer: key inside the module, certificate from the root, server profile and
    atcaprov_cert_info_N.c."""
    check_foreign_options("create", [backend], backend_values)
    if (root_key is None) != (root_cert is None):
        raise click.UsageError("give both --root-key and --root-cert, or neither")
    if root_key is None and root_dir is None:
        raise click.UsageError(
            "no root CA: give --root-dir DIR to make one, or --root-key FILE --root-cert FILE"
        )
    if root_key is not None and root_dir is not None:
        raise click.UsageError("--root-dir makes a new root CA: not with --root-key/--root-cert")
    try:
        sid = parse_signer_id(signer_id) if signer_id is not None else None
    except AtcaprovError as exc:
        raise click.BadParameter(str(exc), param_hint="--signer-id") from exc
    try:
        root_password: bytes | None = None
        if root_key is not None and root_key_is_encrypted(root_key):
            text = (
                _env_value(root_key_password_env, "--root-key-password-env")
                if root_key_password_env is not None
                else click.prompt(f"Password of the root key {root_key}", hide_input=True)
            )
            root_password = text.encode("utf-8")
        password = _module_password(backend, password_prompt, password_env, no_password)
        folder = data_dir if data_dir is not None else default_data_dir()
        request = CreateRequest(
            backend=backend,
            backend_options=backend_kwargs(backend, "create", backend_values, folder),
            spec=SignerSpec(
                name=name,
                signer_id=sid,
                organization=signer_org,
                validity_years=validity_years,
                password=password,
            ),
            device=DeviceSpec(
                common_name=device_cn, organization=device_org, validity_years=device_validity_years
            ),
            data_dir=folder,
            certinfo_out=certinfo_out,
            force=force,
            root_key=root_key,
            root_cert=root_cert,
            root_key_password=root_password,
            root_dir=root_dir,
            root_cn=root_cn,
            root_org=root_org,
            root_validity_years=root_validity_years,
        )
        report = create_signer(request)
    except (AtcaprovError, OSError) as exc:  # OSError: a file system or USB failure
        raise click.ClickException(str(exc)) from exc
    for line in report.lines():
        click.echo(line)


@signer.command(name="list")
@click.option(
    "--backend",
    "backends",
    type=_BACKEND,
    multiple=True,
    help="Back-end to look at; repeatable. Default: hid plus every back-end whose "
    "options are given (as the server does).",
)
@click_options("list")
@click.option(
    "--data-dir",
    type=_PATH,
    default=None,
    help="Server data folder whose signers/ profiles are checked.",
)
def list_command(backends: tuple[str, ...], data_dir: Path | None, **backend_values: Any) -> None:
    """Show each signer module the server would see, and whether it has a profile."""
    names = list(dict.fromkeys(backends)) or chosen_backends("list", backend_values)
    check_foreign_options("list", names, backend_values)
    folder = data_dir if data_dir is not None else default_data_dir()
    options: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            options[name] = backend_kwargs(name, "list", backend_values, folder)
        except MissingOptionError as exc:
            raise click.UsageError(
                f"--backend {name} needs {exc.option.flag} {exc.option.required}"
            ) from exc
    try:
        listings = list_modules(options, folder)
    except (AtcaprovError, OSError) as exc:  # OSError: a file system or USB failure
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Profiles folder: {folder / 'signers'}")
    count = 0
    failed = []
    for listing in listings:
        for line in listing.lines():
            click.echo(line)
        count += len(listing.modules)
        if listing.error is not None and listing.backend in backends:
            failed.append(listing.backend)
    click.echo(f"{count} module(s) found.")
    if failed:
        raise click.ClickException(f"back-end(s) not available: {', '.join(failed)}")


if __name__ == "__main__":
    signer()
