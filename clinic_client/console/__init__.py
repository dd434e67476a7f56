"""The laptop agent behind the clinician's console (docs/console.md, "Agent").

The page in the browser talks only to this agent on 127.0.0.1; the agent holds the device
key, the tokens, the posture agent and the record grants, proxies the API adding the bearer
token and request proofs, and bridges signalling. Modules: ``guard`` (Host, Origin, cookie,
launch code, headers), ``session`` (tokens, posture, grants), ``api`` (JSON routes),
``bridge`` (signalling), ``app`` (the factory), ``cli`` (``telemed-client console``).
"""

from clinic_client.console.app import create_console_app
from clinic_client.console.guard import Gate
from clinic_client.console.session import ConsoleAgent

__all__ = ["ConsoleAgent", "Gate", "create_console_app"]
