// Independent server for the client specs: Node's `ws` library, the echo server with the
// same test commands as py_server.py ("!frag", "!close CODE REASON", "!abort", "!ping",
// "!big N"). Prints "listening on ws://127.0.0.1:PORT".
//   node node_server.js [deflate]   deflate: permessage-deflate on (threshold 1 KiB)
const { WebSocketServer } = require('ws');

const deflate = process.argv[2] === 'deflate';
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: deflate ? { threshold: 1024 } : false });
wss.on('listening', () => console.log(`listening on ws://127.0.0.1:${wss.address().port}`));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? null : data.toString();
    if (text && text.startsWith('!')) {
      const [cmd, ...rest] = text.split(' ');
      if (cmd === '!frag') {
        ws.send('frag', { fin: false });
        ws.send('men', { fin: false });
        ws.send('ted', { fin: true });
      } else if (cmd === '!close') {
        ws.close(Number(rest[0]), rest.slice(1).join(' '));
      } else if (cmd === '!abort') {
        ws.terminate();
      } else if (cmd === '!ping') {
        ws.once('pong', (payload) => ws.send(`pong:${payload.toString()}`));
        ws.ping('srv');
      } else if (cmd === '!big') {
        ws.send(Buffer.alloc(Number(rest[0]), 'z'));
      }
      return;
    }
    ws.send(data, { binary: isBinary });
  });
});
