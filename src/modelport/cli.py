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
console = Console(soft_wrap=True)  # URLs and tokens must stay on one line to be copied

HomeOption = Annotated[Optional[Path], typer.Option("--home", help="Data folder [env MODELPORT_HOME, default ./.modelport]")]
DatabaseOption = Annotated[Optional[str], typer.Option("--database-url", help="SQLAlchemy URL [env MODELPORT_DATABASE_URL]")]


def load_settings(**overrides: Any) -> Settings:
    """Environment first, then the flags that were actually given."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to bind [env MODELPORT_HOST, default 127.0.0.1]")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port [env MODELPORT_PORT, default 8080]")] = None,
    home: HomeOption = None,
    database_url: DatabaseOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Start the platform: migrate the database, then serve every API on one port."""
    import uvicorn

    from modelport.api.app import create_app

    settings = load_settings(host=host, port=port, home=home, database_url=database_url)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    created: list[str] = []
    application = create_app(settings, on_admin_token=created.append)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                _print_banner(settings, created[0] if created else None)

    config = uvicorn.Config(application, host=settings.host, port=settings.port, log_level=log_level,
                            access_log=False, timeout_graceful_shutdown=10, proxy_headers=False,
                            server_header=False, date_header=False)
    Server(config).run()


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

    settings = load_settings(home=home, database_url=database_url)
    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    db.migrate()
    return AuthService(db)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="What the token is for")],
    admin: Annotated[bool, typer.Option("--admin", help="May manage tokens")] = False,
    home: HomeOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Create a token and print its secret (shown only now)."""
    info, secret = _auth_service(home, database_url).create(name, "admin" if admin else "user")
    console.print(f"id:    {info.id}\nname:  {info.name}\nkind:  {info.kind}\ntoken: [bold]{secret}[/]", highlight=False)


@token_app.command("list")
def token_list(home: HomeOption = None, database_url: DatabaseOption = None) -> None:
    table = Table("id", "name", "kind", "created", "revoked")
    for t in _auth_service(home, database_url).list():
        table.add_row(t.id, t.name, t.kind, f"{t.created_at:%Y-%m-%d %H:%M}",
                      f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "")
    console.print(table)


@token_app.command("revoke")
def token_revoke(token_id: str, home: HomeOption = None, database_url: DatabaseOption = None) -> None:
    from modelport.domain.errors import ModelportError

    try:
        info = _auth_service(home, database_url).revoke(token_id)
    except ModelportError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from None
    console.print(f"revoked {info.id} ({info.name})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
