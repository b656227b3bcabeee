"""``medclass serve CKPT``: the web app and the REST API on one local port."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import OUTPUT, console, friendly_errors


def serve_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.safetensors) or run folder.")],
    host: Annotated[str, typer.Option(help="Interface to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 7860,
    api: Annotated[bool, typer.Option("--api/--no-api", help="Also serve the REST API (/predict, /model, /health, /docs).")] = True,
) -> None:
    """Serve the web app (upload, probabilities, Grad-CAM, model card) and the REST API.

    A refused upload or a client that leaves mid-request is one warning line in the log (``medclass --debug
    serve`` adds its traceback); a server fault always logs its traceback.
    """
    from ..serving.webapp import serve

    with friendly_errors():
        if host not in ("127.0.0.1", "localhost", "::1"):
            console.print(f"[bold yellow]warning:[/] binding to {host} exposes an unauthenticated model to the network.")
        console.print(f"[bold]medclass[/] serving {checkpoint} on http://{host}:{port}/"
                      + (" (API docs on /docs)" if api else ""))
        serve(checkpoint, host=host, port=port, api=api, debug=OUTPUT.debug)


def register(app: typer.Typer) -> None:
    """Add `serve`."""
    app.command("serve")(serve_command)
