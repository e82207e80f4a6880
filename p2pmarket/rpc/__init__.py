"""The daemon's control API: a Node's methods over a Unix socket in its home.

``p2pmarket daemon`` serves its Node with :func:`p2pmarket.rpc.server.serve`; the
CLI talks to it with :class:`p2pmarket.rpc.client.Client`, which has the Node's
method names and parameters. The wire format is in :mod:`p2pmarket.rpc.codec`.

Only the client is re-exported here: importing this package must not load trio,
so the server is reached by its module path.
"""

from __future__ import annotations

from typing import Final

from p2pmarket.rpc.client import Client as Client
from p2pmarket.rpc.client import ConnectionLost as ConnectionLost
from p2pmarket.rpc.client import DaemonNotRunning as DaemonNotRunning

# The control socket's file name in a home.
SOCKET_NAME: Final = "node.sock"
