// Loaded with `node --require` before Portkey's gateway (bench/gateway/contenders.py), for two
// reasons, neither of which changes how Portkey handles a request:
//
// 1. Streaming answers 500 as installed from npm (Portkey issues #1389 and #1550): the gateway
//    appends headers to the upstream's fetch Response, whose headers are immutable in node's
//    fetch ("TypeError: immutable"). Each text/event-stream response is re-wrapped here in a new
//    Response over the same body, with a mutable copy of its headers; the bytes stream through
//    untouched. Non-streamed answers are left as they are.
// 2. The gateway listens on every interface; the benchmark stays on loopback, so a listen()
//    given only a port is given 127.0.0.1 as its host.
"use strict";

const upstreamFetch = globalThis.fetch;
globalThis.fetch = async function fetchWithMutableStreamHeaders(...args) {
  const response = await upstreamFetch.apply(this, args);
  const type = response.headers.get("content-type") || "";
  if (!type.includes("text/event-stream")) {
    return response;
  }
  return new Response(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers: new Headers(response.headers),
  });
};

const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  const port = args[0];
  if (typeof port === "number" || (typeof port === "string" && /^\d+$/.test(port))) {
    if (typeof args[1] === "string") {
      // a host was given: keep it
    } else if (args.length > 1 && args[1] === undefined) {
      args[1] = "127.0.0.1";
    } else {
      args.splice(1, 0, "127.0.0.1");
    }
  }
  return listen.apply(this, args);
};
