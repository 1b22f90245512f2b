"""The REST API (FastAPI; plain and SSE runs, learnings, proposals, users) and the web UI.

    from kern.server import TokenConfig, create_app
    app = create_app(agent, tokens=TokenConfig.load())      # KERN_ADMIN_TOKENS, KERN_USER_TOKENS

Needs the ``server`` extra: ``pip install 'kern-agents[server]'``.
"""

from kern._extras import require

require("fastapi", "server")

from kern.server.app import create_app  # noqa: E402
from kern.server.auth import Principal, TokenConfig  # noqa: E402
from kern.server.serve import load_app, serve  # noqa: E402

__all__ = ["Principal", "TokenConfig", "create_app", "load_app", "serve"]
