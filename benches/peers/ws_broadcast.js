// The fan-out benchmark's Node peer: every message goes to every other client, in a loop
// over wss.clients, as a user of `ws` 8 writes it.
//   node benches/peers/ws_broadcast.js    prints "listening on ws://127.0.0.1:PORT"
const { WebSocketServer, WebSocket } = require('ws');

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
wss.on('listening', () => console.log(`listening on ws://127.0.0.1:${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    for (const client of wss.clients) {
      if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
});
