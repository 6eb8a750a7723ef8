#!/usr/bin/env python3
"""A sockgate backend in Python (grpcio), the Ignis chat example without a Socket.IO server.

It serves `SocketHooks` for the gateway:
  * Authenticate: the token (`auth.token` of the handshake, or `{token}` in the
    `authenticate` event) must be `<user>.<hex HMAC-SHA256 of user with BACKEND_SECRET>`;
  * AuthorizeJoin: `chat:*` rooms for everyone, `private:<user>` for that user only;
  * OnEvent:
      - `echo`: sends `echo:response {original, timestamp}` back to the sender, acks
        `{status: "ok"}`;
      - `chat:message {room?, text}`: sends `chat:message {from, room, text, timestamp}` to
        the room, or `chat:broadcast {from, text, timestamp}` to everyone without a room;
        acks `{delivered: true}`;
and drives the sockets through the gateway's `SocketControl` (Send), presenting the
bearer token of `SOCKGATE_TOKEN` (scope `send`, e.g. from `sockgate token --scope send`)
when the gateway authenticates callers, over TLS when `--ca` names the CA that signed the
gateway's control-plane certificate.

Stubs come from `npx buf generate` (gen/python). Run:
  BACKEND_SECRET=... SOCKGATE_TOKEN=... python3 examples/python-backend/backend.py \
      --control 127.0.0.1:50051 --listen 127.0.0.1:50052
It prints `READY hooks=HOST:PORT` once it serves.
"""

import argparse
import hashlib
import hmac
import json
import logging
import os
import sys
from concurrent import futures
from datetime import datetime, timezone
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gen" / "python"))
from sockgate.v1 import common_pb2, control_pb2, control_pb2_grpc  # noqa: E402
from sockgate.v1 import hooks_pb2, hooks_pb2_grpc  # noqa: E402

LOG = logging.getLogger("python-backend")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign(user: str, secret: str) -> str:
    """The token a user presents: `user.hmac`. A login service would issue it."""
    digest = hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()
    return f"{user}.{digest}"


def user_of(token: str, secret: str):
    user, _, _ = token.rpartition(".")
    if user and hmac.compare_digest(sign(user, secret), token):
        return user
    return None


def token_in(request: hooks_pb2.AuthenticateRequest) -> str:
    for text in (request.data_json, request.handshake.auth_json):
        if text:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and isinstance(value.get("token"), str):
                return value["token"]
    return ""


class Hooks(hooks_pb2_grpc.SocketHooksServicer):
    def __init__(self, control: control_pb2_grpc.SocketControlStub, secret: str, token: str):
        self.control = control
        self.secret = secret
        self.metadata = [("authorization", f"Bearer {token}")] if token else []

    def Authenticate(self, request, context):
        user = user_of(token_in(request), self.secret)
        if user is None:
            LOG.info("denied socket %s", request.socket_id)
            return hooks_pb2.AuthenticateResponse(allow=False)
        LOG.info("socket %s is %s (%s)", request.socket_id, user, request.handshake.transport)
        return hooks_pb2.AuthenticateResponse(allow=True, user_id=user)

    def AuthorizeJoin(self, request, context):
        allowed = [
            room for room in request.rooms
            if room.startswith("chat:") or room == f"private:{request.user_id}"
        ]
        return hooks_pb2.AuthorizeJoinResponse(allowed_rooms=allowed)

    def OnEvent(self, request, context):
        data = json.loads(request.data_json) if request.data_json else None
        if request.event == "echo":
            self.send("echo:response", {"original": data, "timestamp": now()},
                      common_pb2.Target(socket_ids=[request.socket_id]))
            return hooks_pb2.OnEventResponse(ack_json=json.dumps({"status": "ok"}))
        if request.event == "chat:message" and isinstance(data, dict):
            room = data.get("room")
            message = {"from": request.user_id, "text": data.get("text"), "timestamp": now()}
            if room:
                self.send("chat:message", {**message, "room": room}, common_pb2.Target(rooms=[room]))
            else:
                self.send("chat:broadcast", message, common_pb2.Target(all=True))
            return hooks_pb2.OnEventResponse(ack_json=json.dumps({"delivered": True}))
        return hooks_pb2.OnEventResponse()

    def send(self, event: str, data, target: common_pb2.Target) -> None:
        self.control.Send(
            control_pb2.SendRequest(event=event, data_json=json.dumps(data), target=target),
            timeout=5,
            metadata=self.metadata,
        )


def control_channel(args) -> grpc.Channel:
    if not args.ca:
        return grpc.insecure_channel(args.control)
    read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.key),
        certificate_chain=read(args.cert),
    )
    return grpc.secure_channel(args.control, credentials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", required=True, help="gateway control address HOST:PORT")
    parser.add_argument("--listen", default="127.0.0.1:0", help="hooks address HOST:PORT")
    parser.add_argument("--ca", help="PEM CA of the gateway's control-plane certificate (TLS)")
    parser.add_argument("--cert", help="PEM client certificate for mutual TLS (with --key)")
    parser.add_argument("--key", help="PEM private key of --cert")
    args = parser.parse_args()
    secret = os.environ.get("BACKEND_SECRET")
    if not secret:
        sys.exit("BACKEND_SECRET is not set")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    control = control_pb2_grpc.SocketControlStub(control_channel(args))
    token = os.environ.get("SOCKGATE_TOKEN", "")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    hooks_pb2_grpc.add_SocketHooksServicer_to_server(Hooks(control, secret, token), server)
    port = server.add_insecure_port(args.listen)
    server.start()
    host = args.listen.rsplit(":", 1)[0]
    print(f"READY hooks={host}:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
