// A gRPC-Web client that is not edge-agent's: Google's grpc-web runtime
// (the one browsers use) on Node.js, with xhr2 standing in for the
// browser's XMLHttpRequest. Used by pkg/l7/proxy's tests.
//
// usage: node client.js BASE_URL FORMAT CALL SIZE [COUNT] [FAIL]
//   FORMAT text (application/grpc-web-text) | binary (application/grpc-web+proto)
//   CALL   unary (UnaryCall, one SIZE-byte payload) |
//          stream (StreamingOutputCall, COUNT messages of SIZE*i bytes)
//   FAIL   sent as x-fail metadata (the test server fails the call)
// Prints one JSON line: {"messages":[sizes...],"code":N,"message":"...",
// "headers":{...},"trailers":{...}}.
'use strict';
global.XMLHttpRequest = require('xhr2');
const {GrpcWebClientBase, MethodDescriptor, MethodType} = require('grpc-web');

const [base, format, call, sizeArg, countArg, fail] = process.argv.slice(2);
const size = Number(sizeArg);
const count = Number(countArg || 1);

// Minimal protobuf wire encoding for the two grpc.testing requests; the
// client under test is the transport, not a protobuf library.
function varint(n) {
  const out = [];
  while (n > 0x7f) { out.push((n & 0x7f) | 0x80); n >>>= 7; }
  out.push(n);
  return out;
}
function field(tag, bytes) { return [...varint(tag), ...varint(bytes.length), ...bytes]; }
function simpleRequest(req) { return Uint8Array.from([0x10, ...varint(req.size)]); }
function streamingRequest(req) {
  const out = [];
  for (let i = 1; i <= req.count; i++) {
    out.push(...field(0x12, [0x08, ...varint(req.size * i), 0x10, ...varint(1000)]));
  }
  return Uint8Array.from(out);
}
// payloadSize returns the length of payload.body (field 1, then field 2).
function payloadSize(bytes) {
  const read = (b, i) => { let n = 0, s = 0, c; do { c = b[i++]; n |= (c & 0x7f) << s; s += 7; } while (c & 0x80); return [n >>> 0, i]; };
  const find = (b, want) => {
    let i = 0;
    while (i < b.length) {
      let key, len; [key, i] = read(b, i);
      if ((key & 7) === 0) { [, i] = read(b, i); continue; }
      [len, i] = read(b, i);
      if (key >>> 3 === want) return b.subarray(i, i + len);
      i += len;
    }
    return new Uint8Array(0);
  };
  return find(find(bytes, 1), 2).length;
}

const client = new GrpcWebClientBase({format});
const result = {messages: [], code: -1, message: '', headers: {}, trailers: {}};
const metadata = fail ? {'x-fail': fail, 'x-echo': 'node'} : {'x-echo': 'node'};
// Events arrive in an order that differs by call type and outcome (the
// unary callback may come after 'status'): record them all and print once
// the event loop has nothing left to do.
let status = null;
function setStatus(st) {
  if (status) return;
  status = st;
  result.code = st.code;
  result.message = st.details || '';
  result.trailers = st.metadata || {};
}
process.on('beforeExit', () => {
  if (!status) { console.error('no status'); process.exitCode = 1; return; }
  console.log(JSON.stringify(result));
  process.exit(0);
});
const svc = '/grpc.testing.TestService/';
if (call === 'unary') {
  const md = new MethodDescriptor(svc + 'UnaryCall', MethodType.UNARY, Object, Object, simpleRequest, b => b);
  const s = client.rpcCall(base + svc + 'UnaryCall', {size}, metadata, md, (err, resp) => {
    if (err) setStatus({code: err.code, details: err.message, metadata: err.metadata});
    else result.messages.push(payloadSize(resp));
  });
  s.on('metadata', m => { result.headers = m; });
  s.on('status', setStatus);
  s.on('error', e => setStatus({code: e.code, details: e.message, metadata: e.metadata}));
} else if (call === 'stream') {
  const md = new MethodDescriptor(svc + 'StreamingOutputCall', MethodType.SERVER_STREAMING, Object, Object, streamingRequest, b => b);
  const s = client.serverStreaming(base + svc + 'StreamingOutputCall', {size, count}, metadata, md);
  s.on('data', resp => result.messages.push(payloadSize(resp)));
  s.on('metadata', m => { result.headers = m; });
  s.on('status', setStatus);
  s.on('error', e => setStatus({code: e.code, details: e.message, metadata: e.metadata}));
} else {
  console.error('unknown call ' + call);
  process.exit(2);
}
setTimeout(() => { console.error('no end within 10s'); process.exit(1); }, 10000).unref();
