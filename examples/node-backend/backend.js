#!/usr/bin/env node
// A sockgate backend in Node (@grpc/grpc-js) with no server of its own: it subscribes to
// the gateway's WatchEvents stream and reacts with SocketControl.Send, the Ignis chat
// example without a Socket.IO server:
//   - `echo` → `echo:response {original, timestamp}` to the sender;
//   - `chat:message {room?, text}` → `chat:message {from, room, text, timestamp}` to the
//     room, or `chat:broadcast {from, text, timestamp}` to everyone.
// When the gateway authenticates callers it presents the bearer token of SOCKGATE_TOKEN
// (scopes `events send`, e.g. from `sockgate token --scope events,send`); with `--ca FILE`
// (and `--cert`/`--key` for mutual TLS) it talks TLS to the control plane.
// Stubs come from `npx buf generate` (gen/es). Run:
//   SOCKGATE_TOKEN=... node examples/node-backend/backend.js --control 127.0.0.1:50051
// It prints `READY` once the event stream is open.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");

const gen = path.join(__dirname, "..", "..", "gen", "es", "sockgate", "v1");
const { SocketControl, EventKind } = require(path.join(gen, "control_pb.js"));
const { clientFor } = require("./grpc-es.js");

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1] : fallback;
}

function credentials() {
  const ca = option("ca");
  if (!ca) return grpc.credentials.createInsecure();
  const read = (name) => (option(name) ? fs.readFileSync(option(name)) : null);
  return grpc.credentials.createSsl(fs.readFileSync(ca), read("key"), read("cert"));
}

const control = new (clientFor(SocketControl))(option("control", "127.0.0.1:50051"), credentials());

const metadata = new grpc.Metadata();
if (process.env.SOCKGATE_TOKEN) metadata.set("authorization", `Bearer ${process.env.SOCKGATE_TOKEN}`);

function send(event, data, target) {
  control.send({ event, dataJson: JSON.stringify(data), target }, metadata, (err) => {
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

const stream = control.watchEvents(
  { kinds: [EventKind.CLIENT_EVENT, EventKind.DROPPED], eventNames: ["echo", "chat:message"] },
  metadata,
);
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
