// Independent client for the compression specs: Node's `ws` with permessage-deflate.
//   node node_client.js URL [no-context-takeover|9-bit-windows]
// Echo round trips of JSON text and binary (small, 2 KB, 200 KB); prints the agreed
// Sec-WebSocket-Extensions as "ok agreed ..." and "ok <what>" or "FAIL <what>: <why>".
const WebSocket = require('ws');

const [url, variant] = process.argv.slice(2);
const perMessageDeflate = {
  threshold: 0,
  'no-context-takeover': { serverNoContextTakeover: true, clientNoContextTakeover: true },
  '9-bit-windows': { serverMaxWindowBits: 9, clientMaxWindowBits: 9 },
}[variant] || {};
const check = (what, ok, detail) => console.log(ok ? `ok ${what}` : `FAIL ${what}: ${detail}`);

const row = '{"user":"ada","room":"lobby","text":"hello, hello"},';
const payloads = [row, row.repeat(40), row.repeat(4000), Buffer.from([...Array(100000).keys()].map((i) => (i * 7) % 256))];

const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0, ...perMessageDeflate } });
const timer = setTimeout(() => { check('finished in time', false, 'timed out'); process.exit(1); }, 30000);
ws.on('upgrade', (res) => {
  const agreed = res.headers['sec-websocket-extensions'] || '';
  check(`agreed ${agreed}`, agreed.startsWith('permessage-deflate'), agreed);
});
ws.on('open', () => {
  let i = 0;
  const next = () => {
    if (i === payloads.length * 2) { clearTimeout(timer); ws.close(1000); return; }
    const p = payloads[i % payloads.length];
    ws.once('message', (data, isBinary) => {
      const same = isBinary ? Buffer.compare(data, p) === 0 : data.toString() === p;
      check(`echo ${isBinary ? 'binary' : 'text'} ${p.length}`, same, `got ${data.length}`);
      i += 1;
      next();
    });
    ws.send(p);
  };
  next();
});
ws.on('error', (e) => { check('connection', false, e.message); process.exit(1); });
