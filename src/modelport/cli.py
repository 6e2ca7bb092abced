"""`modelport` command line: serve the platform, manage tokens."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from modelport.settings import Settings

app = typer.Typer(help="modelport: versioned models, live inference services, scheduled ML workloads.",
                  no_args_is_help=True, add_completion=False)
token_app = typer.Typer(help="Create, list and revoke API tokens (acts on the database of --home/--database-url).",
                        no_args_is_help=True)
app.add_typer(token_app, name="token")
user_app = typer.Typer(help="Create, list and remove users (acts on the database of --home/--database-url).",
                       no_args_is_help=True)
app.add_typer(user_app, name="user")
workflow_app = typer.Typer(help="Run Arazzo workflows over any OpenAPI-described API (modelport's included).",
                           no_args_is_help=True)
app.add_typer(workflow_app, name="workflow")
bundle_app = typer.Typer(help="Build and check generation bundles for the Dataiku face (format: README, 'Bundles').",
                         no_args_is_help=True)
app.add_typer(bundle_app, name="bundle")
console = Console(soft_wrap=True)  # URLs and tokens must stay on one line to be copied

HomeOption = Annotated[Optional[Path], typer.Option("--home", help="Data folder [env MODELPORT_HOME, default ./.modelport]")]
DatabaseOption = Annotated[Optional[str], typer.Option("--database-url", help="SQLAlchemy URL [env MODELPORT_DATABASE_URL]")]


def load_settings(**overrides: Any) -> Settings:
    """Environment first, then the flags that were actually given. A bad value ends the command with one line per
    problem that names the setting and its environment variable, not a traceback."""
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            console.print(f"[red]modelport: setting {name} (MODELPORT_{name.upper()}): {error['msg']}[/]",
                          highlight=False)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to bind [env MODELPORT_HOST, default 127.0.0.1]")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port [env MODELPORT_PORT, default 8080]")] = None,
    home: HomeOption = None,
    database_url: DatabaseOption = None,
    artifacts: Annotated[Optional[str], typer.Option(help="Artifact folder or s3://bucket/prefix [env "
                                                     "MODELPORT_ARTIFACTS, default <home>/artifacts]")] = None,
    drain_timeout: Annotated[Optional[float], typer.Option(
        "--drain-timeout", help="Seconds requests in flight get to finish on SIGTERM [env MODELPORT_DRAIN_TIMEOUT_S, "
        "default 10]")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Start the platform: migrate the database, then serve every API on one port. SIGTERM stops it gracefully:
    no new connections, requests in flight finish (within the drain timeout), then replicas and runs stop."""
    settings = load_settings(host=host, port=port, home=home, database_url=database_url, artifacts=artifacts,
                             drain_timeout_s=drain_timeout)
    # Loading the platform and bringing deployments back takes seconds: say so at once, so nobody wonders.
    console.print(f"modelport: starting on {settings.base_url} (data in {settings.resolved_home}); loading...",
                  highlight=False)
    from modelport.store.database import DatabaseInUse, claim_sqlite

    try:
        database_lock = claim_sqlite(settings.resolved_database_url)  # held until this process ends
    except DatabaseInUse as exc:
        console.print(f"[red]modelport: {exc}[/]", highlight=False)
        raise typer.Exit(1) from None
    import uvicorn

    from modelport.api.app import create_app
    from modelport.api.protocol import protocol_class
    from modelport.api.server import DrainingServer

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    created: list[str] = []
    application = create_app(settings, on_admin_token=created.append)
    config = uvicorn.Config(application, host=settings.host, port=settings.port, log_level=log_level,
                            http=protocol_class(application) or "auto", access_log=False,
                            timeout_graceful_shutdown=settings.drain_timeout_s, proxy_headers=False,
                            server_header=False, date_header=False)
    DrainingServer(config, drain_timeout_s=settings.drain_timeout_s,
                   on_started=lambda: _print_banner(settings, created[0] if created else None)).run()
    del database_lock


def _print_banner(settings: Settings, admin_token: str | None) -> None:
    console.print(f"[bold green]modelport[/] listening on [bold]{settings.base_url}[/]", highlight=False)
    console.print(f"  data: {settings.resolved_home}  database: {_redact(settings.resolved_database_url)}",
                  highlight=False)
    if admin_token:
        console.print(f"  admin token: [bold]{admin_token}[/]", highlight=False, soft_wrap=True)
        console.print(f"  (shown this once; also saved, readable only by you, in {settings.admin_token_file})",
                      highlight=False, soft_wrap=True)
    else:
        console.print(f"  admin token: created on first start; read it from {settings.admin_token_file}",
                      highlight=False)
    console.print(f"  try: curl -H \"Authorization: Bearer $(cat {settings.admin_token_file})\" "
                  f"-X POST {settings.base_url}/v1/api/workspaces/list", highlight=False, soft_wrap=True)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _auth_service(home: Path | None, database_url: str | None):  # type: ignore[no-untyped-def]
    from modelport.services.auth import AuthService
    from modelport.store.database import Database

    from modelport.store.home import prepare_home

    settings = load_settings(home=home, database_url=database_url)
    prepare_home(settings.resolved_home)
    db = Database(settings.resolved_database_url)
    db.migrate()
    return AuthService(db)


def _core(home: Path | None, database_url: str | None):  # type: ignore[no-untyped-def]
    """The services the token and user commands need, on the database of --home/--database-url (acting as the
    system: the CLI is for whoever holds the home folder)."""
    from types import SimpleNamespace

    from modelport.services.access import Access
    from modelport.services.credentials import CredentialService
    from modelport.services.sagemaker import SageMakerService
    from modelport.services.users import UserService
    from modelport.store.secrets import SecretBox

    settings = load_settings(home=home, database_url=database_url)
    auth = _auth_service(home, database_url)
    sagemaker = SageMakerService(auth.db, None, Path("."), account_id="", file_roots=[],  # type: ignore[arg-type]
                                 s3_endpoint_url=None, max_artifact_bytes=0,
                                 secrets=SecretBox.for_home(settings.resolved_home, settings.secret_key))
    access = Access(auth.db)
    return SimpleNamespace(auth=auth, sagemaker=sagemaker, users=UserService(auth.db, auth, access),
                           credentials=CredentialService(auth.db, auth))


def _fail(exc: Exception) -> None:
    console.print(f"[red]{getattr(exc, 'message', exc)}[/]")
    raise typer.Exit(1) from None


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="What the token is for")],
    admin: Annotated[bool, typer.Option("--admin", help="May manage tokens, users, everything")] = False,
    aws: Annotated[bool, typer.Option("--aws", help="An AWS-style access key pair (SigV4) for the SageMaker face")] = False,
    user: Annotated[Optional[str], typer.Option("--user", help="The user (email) it belongs to; a user token "
                                                "without one gets a new user named like the token")] = None,
    workspace: Annotated[Optional[int], typer.Option("--workspace", help="Workspace id that faces without "
                                                     "workspaces (SageMaker, Craft AI) act in")] = None,
    home: HomeOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Create a token (or AWS key pair) and print its secret (shown only now)."""
    from modelport.domain.errors import ModelportError

    core = _core(home, database_url)
    try:
        user_id = core.users.get(user).id if user else None
        if aws:
            key, secret = core.sagemaker.create_key(name, user_id=user_id, workspace_id=workspace)
            console.print(f"aws_access_key_id:     {key}\naws_secret_access_key: [bold]{secret}[/]", highlight=False)
            return
        if not admin and user_id is None:
            user_id = core.users.ensure(name).id
        info, secret = core.auth.create(name, "admin" if admin else "user", user_id=None if admin else user_id,
                                        workspace_id=workspace)
    except ModelportError as exc:
        _fail(exc)
    console.print(f"id:    {info.id}\nname:  {info.name}\nkind:  {info.kind}\ntoken: [bold]{secret}[/]", highlight=False)


@token_app.command("list")
def token_list(
    kind: Annotated[Optional[str], typer.Option("--kind", help="admin, user, dataiku, aws, craftai-endpoint, run")] = None,
    home: HomeOption = None, database_url: DatabaseOption = None,
) -> None:
    """Every credential, whatever its kind; never a secret."""
    from modelport.domain.errors import ModelportError

    def when(value) -> str:  # type: ignore[no-untyped-def]
        return f"{value:%Y-%m-%d %H:%M}" if value else ""

    table = Table("id", "kind", "name", "owner", "workspace", "created", "last used", "revoked")
    try:
        items = _core(home, database_url).credentials.list(kind)
    except ModelportError as exc:
        _fail(exc)
    for c in items:
        table.add_row(c.id, c.kind, c.name, c.owner or "", str(c.workspace_id or ""), when(c.created_at),
                      when(c.last_used_at), when(c.revoked_at))
    Console(width=max(console.width, 200)).print(table)  # ids whole, never wrapped: they are copied to `revoke`


@token_app.command("revoke")
def token_revoke(credential_id: str, home: HomeOption = None, database_url: DatabaseOption = None) -> None:
    """Revoke any credential by its id (as `token list` shows it)."""
    from modelport.domain.errors import ModelportError

    try:
        info = _core(home, database_url).credentials.revoke(credential_id)
    except ModelportError as exc:
        _fail(exc)
    console.print(f"revoked {info.kind} {info.id} ({info.name})")


@user_app.command("create")
def user_create(email: str, home: HomeOption = None, database_url: DatabaseOption = None) -> None:
    from modelport.domain.errors import ModelportError

    try:
        info = _core(home, database_url).users.create(email)
    except ModelportError as exc:
        _fail(exc)
    console.print(f"id:    {info.id}\nemail: {info.email}", highlight=False)


@user_app.command("list")
def user_list(home: HomeOption = None, database_url: DatabaseOption = None) -> None:
    table = Table("id", "email", "created")
    for u in _core(home, database_url).users.list():
        table.add_row(u.id, u.email, f"{u.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@user_app.command("remove")
def user_remove(user: str, home: HomeOption = None, database_url: DatabaseOption = None) -> None:
    """Revoke the user's credentials (ending their console sessions), drop their memberships, remove them."""
    from modelport.domain.errors import ModelportError

    try:
        info = _core(home, database_url).users.remove(user)
    except ModelportError as exc:
        _fail(exc)
    console.print(f"removed {info.email} ({info.id})")


@bundle_app.command("build")
def bundle_build(
    folder: Annotated[Path, typer.Argument(help="Folder holding modelport-bundle.json and the files it names")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The bundle ZIP to write")],
) -> None:
    """ZIP a folder into a generation bundle, after validating its manifest."""
    from modelport.domain.errors import ModelportError
    from modelport.services.bundles import build_bundle

    try:
        manifest = build_bundle(folder, output)
    except ModelportError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from None
    console.print(f"wrote {output}: generation {manifest.version}, "
                  f"endpoints {', '.join(e.id for e in manifest.endpoints)}", highlight=False)


@bundle_app.command("check")
def bundle_check(file: Annotated[Path, typer.Argument(help="A bundle ZIP")]) -> None:
    """Run every check an import runs: archive safety, manifest, files present, models load, functions exist."""
    from modelport.domain.errors import ModelportError
    from modelport.services.bundles import check_bundle

    if not file.is_file():
        console.print(f"[red]{file} is not a file[/]")
        raise typer.Exit(2)
    try:
        manifest, checked = check_bundle(file)
    except ModelportError as exc:
        console.print(f"[red]bundle refused: {exc.message}[/]", highlight=False)
        raise typer.Exit(1) from None
    table = Table("endpoint", "type", "framework", "file")
    for item in checked:
        e = item.endpoint
        table.add_row(e.id, e.dataiku_type, e.framework, e.file)
    console.print(f"bundle OK: generation {manifest.version}")
    console.print(table)


@app.command()
def openapi(output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write here instead of stdout")] = None) -> None:
    """Print modelport's OpenAPI document (every face), e.g. as a source description for Arazzo workflows."""
    import json as jsonlib

    from modelport.api.app import create_app, openapi_document

    text = jsonlib.dumps(openapi_document(create_app(Settings()).fastapi_app), indent=1, sort_keys=True) + "\n"
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)


# -- workflows ----------------------------------------------------------------------------------------------------------

def _pairs(values: list[str], separator: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, rest = value.partition(separator)
        if not sep or not key:
            console.print(f"[red]{what} {value!r} must look like NAME{separator}VALUE[/]")
            raise typer.Exit(2)
        pairs.append((key, rest))
    return pairs


def _load_document(path: Path, strict: bool):  # type: ignore[no-untyped-def]
    from modelport.workflows import DocumentError, load

    try:
        return load(path, strict=strict)
    except DocumentError as exc:
        console.print(f"[red]invalid document {path}:[/]")
        for problem in exc.problems:
            console.print(f"  - {problem}", highlight=False)
        raise typer.Exit(2) from None


@workflow_app.command("validate")
def workflow_validate(file: Path, strict: Annotated[bool, typer.Option(help="Refuse lenient forms")] = False) -> None:
    """Check the document and its source descriptions; exit 2 if invalid."""
    document = _load_document(file, strict)
    for warning in document.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"{file}: valid ({len(document.workflows)} workflows, {len(document.sources)} sources)")


@workflow_app.command("list")
def workflow_list(file: Path) -> None:
    """The document's workflows, their inputs and outputs."""
    document = _load_document(file, False)
    table = Table("workflow", "steps", "inputs", "outputs", "summary")
    for w in document.workflows:
        inputs = ", ".join((w.get("inputs") or {}).get("properties", {}).keys())
        table.add_row(w["workflowId"], str(len(w["steps"])), inputs, ", ".join((w.get("outputs") or {}).keys()),
                      w.get("summary", ""))
    console.print(table)


@workflow_app.command("run")
def workflow_run(
    file: Path,
    workflow: Annotated[Optional[str], typer.Option("--workflow", help="workflowId (default: the first)")] = None,
    input: Annotated[list[str], typer.Option("--input", help="NAME=VALUE, or NAME=@path for a file")] = [],  # noqa: B006
    inputs_file: Annotated[Optional[Path], typer.Option("--inputs-file", help="JSON object of inputs")] = None,
    server: Annotated[list[str], typer.Option("--server", help="SOURCE=URL: where that source's API lives")] = [],  # noqa: B006
    server_variable: Annotated[list[str], typer.Option("--server-variable", help="NAME=VALUE for server URLs")] = [],  # noqa: B006
    header: Annotated[list[str], typer.Option("--header", help="SOURCE:Name=Value sent with every request")] = [],  # noqa: B006
    strict: Annotated[bool, typer.Option(help="Refuse lenient forms (actions without name, comparisons in jsonpath)")] = False,
    max_steps: Annotated[int, typer.Option(help="Step budget: bounds goto loops")] = 1000,
    poll_interval: Annotated[float, typer.Option(help="Seconds between repeats of the same step")] = 1.0,
    aws_profile: Annotated[Optional[str], typer.Option(help="AWS profile for SigV4-signed sources")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print outputs and the trace as JSON")] = False,
) -> None:
    """Run a workflow. Exit 0 on success, 1 when the workflow fails, 2 for an invalid document or inputs."""
    import json as jsonlib

    from modelport.workflows.files import FileInput
    from modelport.workflows.runner import InvalidInputs, WorkflowRunner

    document = _load_document(file, strict)
    values: dict[str, object] = {}
    if inputs_file is not None:
        try:
            loaded = jsonlib.loads(inputs_file.read_text())
        except (OSError, ValueError) as exc:
            console.print(f"[red]cannot read {inputs_file}: {exc}[/]")
            raise typer.Exit(2) from None
        if not isinstance(loaded, dict):
            console.print(f"[red]{inputs_file} must hold a JSON object[/]")
            raise typer.Exit(2)
        values.update(loaded)
    for key, value in _pairs(input, "=", "--input"):
        if value.startswith("@"):
            path = Path(value[1:]).expanduser()
            if not path.is_file():
                console.print(f"[red]--input {key}: no file {path}[/]")
                raise typer.Exit(2)
            values[key] = FileInput(path.resolve())
        else:
            values[key] = value
    headers: dict[str, dict[str, str]] = {}
    for source_and_name, value in _pairs(header, "=", "--header"):
        source, sep, name = source_and_name.partition(":")
        if not sep:
            console.print(f"[red]--header {source_and_name!r} must look like SOURCE:Name=Value[/]")
            raise typer.Exit(2)
        headers.setdefault(source, {})[name] = value
    servers = dict(_pairs(server, "=", "--server"))
    unknown = set(servers) - set(document.sources)
    if unknown:
        console.print(f"[red]--server names unknown sources: {', '.join(sorted(unknown))}[/]")
        raise typer.Exit(2)
    live = console.is_terminal and not as_json

    def show(entry) -> None:  # type: ignore[no-untyped-def]
        if as_json:
            return
        mark = "[green]ok[/]" if entry.success else "[red]failed[/]"
        status = entry.response.get("status", "")
        line = f"{mark} {entry.workflow}/{entry.step} {entry.request.get('method', '')} {status} -> {entry.action} ({entry.seconds} s)"
        console.print(line if live else line.replace("[green]", "").replace("[red]", "").replace("[/]", ""),
                      highlight=False)

    runner = WorkflowRunner(document, servers=servers, server_variables=dict(_pairs(server_variable, "=", "--server-variable")),
                            headers=headers, strict=strict, max_steps=max_steps, poll_interval_s=poll_interval,
                            aws_profile=aws_profile, on_step=show)
    workflow_id = workflow or document.workflows[0]["workflowId"]
    try:
        document.workflow(workflow_id)
        runner.check_inputs(workflow_id, values)
    except InvalidInputs as exc:
        console.print(f"[red]invalid inputs: {exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:  # DocumentError for an unknown workflow
        console.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    if live:
        with console.status(f"running {workflow_id} ..."):
            result = runner.run(workflow_id, values)
    else:
        result = runner.run(workflow_id, values)
    if as_json:
        print(jsonlib.dumps(result.as_json(), indent=2, default=str))
    else:
        for warning in result.warnings:
            console.print(f"warning: {warning}", highlight=False)
        if result.ok:
            console.print(jsonlib.dumps(result.outputs, indent=2, default=str), highlight=False)
        else:
            console.print(f"workflow failed at step {result.failed_step}: {result.error}", highlight=False)
            failing = next((e for e in reversed(result.trace) if not e.success), None)
            if failing is not None:
                console.print("request: " + jsonlib.dumps(failing.request, indent=2, default=str), highlight=False)
                console.print("response: " + jsonlib.dumps(failing.response, indent=2, default=str), highlight=False)
    raise typer.Exit(0 if result.ok else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
