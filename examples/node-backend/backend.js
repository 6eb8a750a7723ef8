#!/usr/bin/env node
// A sockgate backend in Node (@grpc/grpc-js) with no server of its own: it subscribes to
// the gateway's WatchEvents stream and reacts with SocketControl.Send, the Ignis chat
// example without a Socket.IO server:
//   - `echo` → `echo:response {original, timestamp}` to the sender;
//   - `chat:message {room?, text}` → `chat:message {from, room, text, timestamp}` to the
//     room, or `chat:broadcast {from, text, timestamp}` to everyone.
// Stubs come from `npx buf generate` (gen/es). Run:
//   node examples/node-backend/backend.js --control 127.0.0.1:50051
// It prints `READY` once the event stream is open.
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");

const gen = path.join(__dirname, "..", "..", "gen", "es", "sockgate", "v1");
const { SocketControl, EventKind } = require(path.join(gen, "control_pb.js"));
const { clientFor } = require("./grpc-es.js");

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1] : fallback;
}

const control = new (clientFor(SocketControl))(
  option("control", "127.0.0.1:50051"),
  grpc.credentials.createInsecure(),
);

function send(event, data, target) {
  control.send({ event, dataJson: JSON.stringify(data), target }, (err) => {
    if (err) console.error(`send ${event} failed: ${err.code} ${err.details}`);
  });
}

function onClientEvent({ event, socketId, userId, dataJson }) {
  const data = dataJson ? JSON.parse(dataJson) : null;
  const timestamp = new Date().toISOString();
  if (event === "echo") {
    send("echo:response", { original: data, timestamp }, { socketIds: [socketId] });
  } else if (event === "chat:message" && data && typeof data === "object") {
    const message = { from: userId, text: data.text, timestamp };
    if (data.room) send("chat:message", { ...message, room: data.room }, { rooms: [data.room] });
    else send("chat:broadcast", message, { all: true });
  }
}

const stream = control.watchEvents({
  kinds: [EventKind.CLIENT_EVENT, EventKind.DROPPED],
  eventNames: ["echo", "chat:message"],
});
stream.on("metadata", () => console.log("READY"));
stream.on("data", (event) => {
  if (event.kind === EventKind.DROPPED) console.error(`missed ${event.dropped} events`);
  else onClientEvent(event);
});
stream.on("error", (err) => {
  console.error(`event stream failed: ${err.code} ${err.details}`);
  process.exit(1);
});
stream.on("end", () => process.exit(0));
process.on("SIGTERM", () => {
  stream.cancel();
  process.exit(0);
});
