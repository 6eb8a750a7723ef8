#!/usr/bin/env python3
"""Calls `Batch` with grpcio, the way a Python backend would, for tests/batch.rs.

Usage: batch_client.py CONTROL_ADDR SOCKET_ID
Sends to SOCKET_ID, joins it to `py:room`, sends to that room, sends to a socket id that
is connected nowhere, and prints one JSON line per result: {"code", "message", "reply"}.
"""

import json
import sys
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gen" / "python"))
from sockgate.v1 import common_pb2, control_pb2, control_pb2_grpc  # noqa: E402


def send(target, event, data):
    return control_pb2.BatchCommand(
        send=control_pb2.SendRequest(event=event, data_json=json.dumps(data), target=target)
    )


def main():
    address, sid = sys.argv[1], sys.argv[2]
    to_socket = common_pb2.Target(socket_ids=[sid])
    request = control_pb2.BatchRequest(
        commands=[
            send(to_socket, "py:direct", {"n": 1}),
            control_pb2.BatchCommand(
                join=control_pb2.JoinRequest(target=to_socket, rooms=["py:room"])
            ),
            send(common_pb2.Target(rooms=["py:room"]), "py:room", "hello"),
            send(common_pb2.Target(socket_ids=["AAAAAAAAAAAAAAAA"]), "py:lost", {}),
        ]
    )
    with grpc.insecure_channel(address) as channel:
        response = control_pb2_grpc.SocketControlStub(channel).Batch(request, timeout=10)
    for result in response.results:
        reply = result.WhichOneof("reply")
        print(json.dumps({"code": result.code, "message": result.message, "reply": reply}))


if __name__ == "__main__":
    main()
