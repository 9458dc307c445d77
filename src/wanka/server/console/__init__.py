"""The web console, served by ``wanka server`` itself at ``/``: pages rendered on the server
(Jinja2, every value escaped), kept live by htmx, which polls small fragments of them. No CDN:
htmx is vendored in ``static/vendor`` (``scripts/vendor-console.sh`` fetches it again at the
pinned version, with its licence).

The console acts through the same service functions as the REST API, for the same principal, so
it sees and may change exactly what that principal's token may: a member its own tenant's jobs,
an admin everything. Sign-in, the session cookie and CSRF: :mod:`.session`."""

from wanka.server.console.pages import router

__all__ = ["router"]
