// The benchmark's Node peer: a `ws` 8 echo server, as a user would write it (binary as
// binary, text as text; permessage-deflate off, its default on servers, unless asked).
//   node benches/peers/ws_echo.js [deflate]    prints "listening on ws://127.0.0.1:PORT"
const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 16 * 1024 * 1024,
  perMessageDeflate: process.argv[2] === 'deflate' });
wss.on('listening', () => console.log(`listening on ws://127.0.0.1:${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
