"""Kaggle credentials, found where the official `kaggle` client looks for them, and a client that uses them.

kagglekit resolves credentials itself, at call time, instead of relying on `import kaggle`: the client
authenticates once at import (printing help or exiting when it finds nothing) and fixes its config folder then, so a
notebook that sets credentials after the import, or kagglekit's notebook-secrets fallback, would be missed.
Secrets are kept out of every repr and message, so they cannot reach logs, run records or error output.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kagglekit.errors import CredentialsError, KaggleError
from kagglekit.kaggle.notebook import in_kaggle_notebook

if TYPE_CHECKING:
    from kaggle.api.kaggle_api_extended import KaggleApi

log = logging.getLogger(__name__)

TOKEN_PAGE = "https://www.kaggle.com/settings/api"


@dataclass(frozen=True)
class Credentials:
    """Where the credentials came from, and what the client needs; the secrets never show in a repr."""

    source: str
    username: str | None = None
    key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)  # an access token, sent as a Bearer token


def kaggle_config_dir() -> Path:
    """The folder the client reads kaggle.json from (the rule of `KaggleApi.config_dir`, evaluated now)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"]).expanduser()
    folder = Path.home() / ".kaggle"
    if sys.platform.startswith("linux") and not folder.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    return folder


def _read_kaggle_json(path: Path, problems: list[str]) -> dict[str, str]:
    if not path.is_file():
        return {}
    if os.name != "nt" and path.stat().st_mode & 0o044:
        log.warning("%s is readable by other users of this machine; protect your key with `chmod 600 %s`.", path, path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        problems.append(f"{path} is not valid JSON")
        return {}
    values = {k: str(data[k]) for k in ("username", "key") if isinstance(data, dict) and data.get(k)}
    if len(values) < 2:
        problems.append(f"{path} lacks a username and key")
    return values


def _legacy_key(problems: list[str]) -> Credentials | None:
    """kaggle.json, with KAGGLE_USERNAME/KAGGLE_KEY taking precedence field by field, as the client merges them."""
    path = kaggle_config_dir() / "kaggle.json"
    from_file = _read_kaggle_json(path, problems)
    from_env = {
        k: os.environ[f"KAGGLE_{k.upper()}"] for k in ("username", "key") if os.environ.get(f"KAGGLE_{k.upper()}")
    }
    values = from_file | from_env
    if not (values.get("username") and values.get("key")):
        return None
    if not from_file:
        source = "environment variables KAGGLE_USERNAME and KAGGLE_KEY"
    elif from_env:
        source = f"{path} and environment variable(s) {', '.join(f'KAGGLE_{k.upper()}' for k in from_env)}"
    else:
        source = str(path)
    return Credentials(source, values["username"], key=values["key"])


def _notebook_secrets() -> Credentials | None:
    """KAGGLE_USERNAME and KAGGLE_KEY attached to a Kaggle notebook as secrets (Add-ons → Secrets)."""
    if not in_kaggle_notebook():
        return None
    try:
        from kaggle_secrets import UserSecretsClient
    except ImportError:
        return None
    client = UserSecretsClient()
    try:
        username, key = client.get_secret("KAGGLE_USERNAME"), client.get_secret("KAGGLE_KEY")
    except Exception:  # the secrets service raises its own error types for a secret that is not attached
        return None
    return Credentials("Kaggle notebook secrets", username, key=key) if username and key else None


def find_credentials() -> Credentials:
    """The credentials the client would use, in its order (access token, kaggle.json/env, OAuth login), then
    notebook secrets; a `CredentialsError` that says how to provide them if there are none."""
    from kagglesdk.kaggle_creds import KaggleCredentials
    from kagglesdk.kaggle_env import get_access_token_from_env

    token, token_source = get_access_token_from_env()
    if token:
        described = {
            "KAGGLE_API_TOKEN": "environment variable KAGGLE_API_TOKEN",
            "access_token": "~/.kaggle/access_token",
        }
        return Credentials(described.get(token_source, str(token_source)), token=token)
    problems: list[str] = []
    found = _legacy_key(problems)
    if found is not None:
        return found
    if KaggleCredentials.load(client=None) is not None:
        return Credentials(f"{KaggleCredentials.DEFAULT_CREDENTIALS_FILE} (saved by `kaggle auth login`)")
    found = _notebook_secrets()
    if found is not None:
        return found
    config = kaggle_config_dir() / "kaggle.json"
    raise CredentialsError(
        "No Kaggle credentials found" + (f" ({'; '.join(problems)})" if problems else "") + ". Do one of:\n"
        f"  - create an API token at {TOKEN_PAGE} and save the downloaded kaggle.json as {config}, "
        f"then run `chmod 600 {config}` (KAGGLE_CONFIG_DIR picks another folder);\n"
        "  - set the environment variables KAGGLE_USERNAME and KAGGLE_KEY;\n"
        "  - set KAGGLE_API_TOKEN to an access token, or save the token in ~/.kaggle/access_token;\n"
        "  - in a Kaggle notebook, add KAGGLE_USERNAME and KAGGLE_KEY under Add-ons → Secrets."
    )


def kaggle_client(credentials: Credentials | None = None) -> KaggleApi:
    """A `KaggleApi` that authenticates with `credentials` (default: `find_credentials()`)."""
    credentials = credentials or find_credentials()
    try:
        # The import authenticates on its own and prints what it finds; kagglekit has already done that.
        with contextlib.redirect_stdout(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as error:
        raise KaggleError(
            f"The official kaggle client cannot be imported ({error}). Install what is missing with pip, e.g. "
            "`pip install kaggle six` (kaggle 2.2 imports six without declaring it)."
        ) from error
    api = KaggleApi()
    if credentials.token:
        api.config_values = {api.CONFIG_NAME_TOKEN: credentials.token}
    elif credentials.key:
        api.config_values = {api.CONFIG_NAME_USER: credentials.username, api.CONFIG_NAME_KEY: credentials.key}
    else:  # the login of `kaggle auth login`, which only the client knows how to refresh
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                api.authenticate()
        except SystemExit:
            raise CredentialsError(
                f"Kaggle no longer accepts the login in {credentials.source}; run `kaggle auth login` again."
            ) from None
    return api


RULES_URL = "https://www.kaggle.com/competitions/{slug}/rules"


@contextlib.contextmanager
def client_errors(what: str, credentials: Credentials, competition: str | None = None) -> Iterator[None]:
    """Turn the client's errors (HTTP failures, its own ValueError checks) into a `KaggleError` saying what to do.

    With `competition` (a slug), a 403 means its rules were not accepted and a 404 a wrong slug.
    """
    from requests import HTTPError, RequestException

    try:
        yield
    except HTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            raise KaggleError(
                f"Kaggle rejected the credentials from {credentials.source} ({error}). "
                f"Create a new API token at {TOKEN_PAGE}."
            ) from error
        if competition and status == 403:
            raise KaggleError(
                f"Kaggle refused access to '{competition}' ({error}). Accept the competition's rules at "
                f"{RULES_URL.format(slug=competition)} (the API cannot accept them for you), then try again."
            ) from error
        if competition and status == 404:
            raise KaggleError(
                f"Kaggle has no competition '{competition}' ({error}); check the slug in its URL."
            ) from error
        raise KaggleError(f"Could not {what}: Kaggle answered {status}: {error}") from error
    except RequestException as error:
        raise KaggleError(f"Could not reach Kaggle to {what}: {error}") from error
    except ValueError as error:
        raise KaggleError(f"Could not {what}: {error}") from error
