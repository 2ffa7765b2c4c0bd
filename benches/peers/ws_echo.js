// The benchmark's Node peer: a `ws` 8 echo server, as a user would write it (binary as
// binary, text as text; permessage-deflate off, its default on servers, unless asked).
//   node benches/peers/ws_echo.js [deflate|plain [CERT KEY]]
// prints "listening on ws://127.0.0.1:PORT" (wss:// on an https server with CERT and KEY).
const fs = require('fs');
const https = require('https');
const { WebSocketServer } = require('ws');

const [mode, cert, key] = process.argv.slice(2);
const options = { maxPayload: 16 * 1024 * 1024, perMessageDeflate: mode === 'deflate' };
let wss;
if (cert) {
  const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) });
  wss = new WebSocketServer({ server, ...options });
  server.listen(0, '127.0.0.1', () => console.log(`listening on wss://127.0.0.1:${server.address().port}`));
} else {
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...options });
  wss.on('listening', () => console.log(`listening on ws://127.0.0.1:${wss.address().port}`));
}
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
