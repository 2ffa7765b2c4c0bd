// Drives headless Chromium (Debian's /usr/bin/chromium, through playwright-core) through
// the chat page of examples/public: two pages join, page A sends, page B must show it;
// the WebSocket handshake Chromium saw (through the DevTools protocol) must have agreed
// permessage-deflate, and a 3,000-character message (sent compressed both ways) must arrive.
//   node browser_chat.js URL SCREENSHOT_PREFIX [ignore-certificate-errors]
// Prints "ok <what>" lines, or "FAIL <what>: <why>" and exits 1.
const { chromium } = require('playwright-core');

const [url, shots, certFlag] = process.argv.slice(2);
const insecure = certFlag === 'ignore-certificate-errors';

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...(insecure ? ['--ignore-certificate-errors'] : [])],
  });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: insecure, viewport: { width: 640, height: 400 } });
    const a = await context.newPage();
    const b = await context.newPage();
    const cdp = await context.newCDPSession(a);
    await cdp.send('Network.enable');
    const handshake = new Promise((resolve) => cdp.on('Network.webSocketHandshakeResponseReceived',
      (e) => resolve(e.response.headers)));
    for (const page of [a, b]) {
      await page.goto(url);
      await page.waitForFunction(() => document.getElementById('status').textContent === 'connected', null, { timeout: 10000 });
    }
    console.log('ok both pages connected with the browser WebSocket');
    const headers = await handshake;
    const ext = Object.entries(headers).find(([k]) => k.toLowerCase() === 'sec-websocket-extensions');
    if (!ext || !ext[1].startsWith('permessage-deflate')) throw new Error(`no permessage-deflate: ${JSON.stringify(headers)}`);
    console.log(`ok the browser agreed ${ext[1]}`);
    await a.fill('#text', 'hello from page A');
    await a.click('#send');
    await b.waitForSelector('#log li:has-text("hello from page A")', { timeout: 10000 });
    console.log('ok page B shows the message page A sent');
    await a.waitForSelector('#log li:has-text("hello from page A")', { timeout: 10000 });
    console.log('ok page A gets its own message back');
    const long = 'compress me '.repeat(250);
    await a.fill('#text', long);
    await a.click('#send');
    await b.waitForFunction((t) => [...document.querySelectorAll('#log li')].some((li) => li.textContent.includes(t)),
      long, { timeout: 10000 });
    console.log('ok page B shows a 3,000-character message that went compressed both ways');
    await a.screenshot({ path: `${shots}-a.png` });
    await b.screenshot({ path: `${shots}-b.png` });
    console.log('ok screenshots saved');
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.log(`FAIL browser chat: ${e.message.split('\n')[0]}`);
  process.exit(1);
});
