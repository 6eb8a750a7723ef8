// Drives official socket.io-client sockets for the Rust end-to-end tests.
//
// Reads one JSON command per line on stdin, writes one JSON event per line on stdout:
//   {"op":"connect","id":"a","url":"http://127.0.0.1:3000","opts":{...},"onConnect":["authenticate"]}
//     (onConnect: an event emitted from the connect callback itself, with no delay;
//      "reportPings":true reports every Engine.IO ping the client receives;
//      opts.parser "msgpack" means socket.io-msgpack-parser)
//   {"op":"emit","id":"a","event":"join","args":[{"rooms":["x"]}],"req":7,"ack":true}
//   {"op":"reply","id":"a","event":"question","with":{"answer":42}}   (ack incoming events)
//   {"op":"close","id":"a"}
//   {"op":"drop","id":"a"}   (closes the transport under the socket, as a network loss
//                             does: a client with reconnection on reconnects, recovering
//                             its session when the server allows)
//   {"op":"reconnect","id":"a"}   (connects a disconnected socket again, presenting its
//                                  session for recovery if it has one)
// Events out: {"id","type":"connect","sid","recovered","pid"} | {"id","type":"connect_error","message"} |
//   {"id","type":"disconnect","reason"} | {"id","type":"event","event","args"} |
//   {"id","type":"ack","req","err","args"} | {"id","type":"eio_ping"} |
//   {"id","type":"replying","event"} (the reply is set). Binary values travel
//   as {"$bin": base64}.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";

const sockets = new Map();
const replies = new Map();

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function encode(value) {
  if (value instanceof ArrayBuffer) return { $bin: Buffer.from(value).toString("base64") };
  if (ArrayBuffer.isView(value)) {
    return { $bin: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64") };
  }
  if (Array.isArray(value)) return value.map(encode);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encode(v)]));
  }
  return value;
}

function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value && typeof value === "object") {
    if (typeof value.$bin === "string") return Buffer.from(value.$bin, "base64");
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decode(v)]));
  }
  return value;
}

function connect({ id, url, opts, onConnect, reportPings }) {
  const parser = opts?.parser === "msgpack" ? { parser: msgpackParser } : {};
  const socket = io(url, { reconnection: false, forceNew: true, timeout: 10000, ...opts, ...parser });
  sockets.set(id, socket);
  if (reportPings) socket.io.on("ping", () => out({ id, type: "eio_ping" }));
  socket.on("connect", () => {
    if (onConnect) socket.emit(...decode(onConnect));
    out({
      id,
      type: "connect",
      sid: socket.id,
      recovered: socket.recovered,
      // The private session id (a secret; the tests present it from another client).
      pid: socket._pid,
      transport: socket.io.engine.transport.name,
    });
  });
  socket.on("connect_error", (err) => out({ id, type: "connect_error", message: err.message }));
  socket.io.on("open", () =>
    socket.io.engine.on("upgrade", (transport) => out({ id, type: "upgrade", transport: transport.name })));
  socket.on("disconnect", (reason) => out({ id, type: "disconnect", reason }));
  socket.onAny((event, ...args) => {
    const callback = typeof args[args.length - 1] === "function" ? args.pop() : null;
    const key = `${id}\u0000${event}`;
    if (callback && replies.has(key)) callback(replies.get(key));
    out({ id, type: "event", event, args: encode(args), withAck: callback !== null });
  });
}

function emit({ id, event, args = [], ack = false, req = 0, timeoutMs = 5000 }) {
  const socket = sockets.get(id);
  if (!socket) return out({ id, type: "error", message: `no socket ${id}` });
  const decoded = decode(args);
  if (ack) {
    socket.timeout(timeoutMs).emit(event, ...decoded, (err, ...res) =>
      out({ id, type: "ack", req, err: err ? err.message : null, args: encode(res) }));
  } else {
    socket.emit(event, ...decoded);
  }
}

const handlers = {
  connect,
  emit,
  reply: ({ id, event, with: value }) => {
    replies.set(`${id}\u0000${event}`, decode(value));
    out({ id, type: "replying", event });
  },
  close: ({ id }) => sockets.get(id)?.disconnect(),
  drop: ({ id }) => sockets.get(id)?.io.engine.close(),
  reconnect: ({ id }) => sockets.get(id)?.connect(),
  engine_id: ({ id }) => out({ id, type: "engine_id", engineId: sockets.get(id)?.io.engine?.id ?? null }),
};

createInterface({ input: process.stdin }).on("line", (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  const handler = handlers[command.op];
  if (!handler) return out({ type: "error", message: `unknown op ${command.op}` });
  handler(command);
}).on("close", () => {
  for (const socket of sockets.values()) socket.disconnect();
  process.exit(0);
});

out({ type: "ready" });
