// A tiny web server for the demo's fake internet: answers every request with
// its own name, and keeps /stream open, writing a line every 200 ms.
const http = require('node:http');
const [host, name] = process.argv.slice(2);
http
  .createServer((req, res) => {
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const t = setInterval(() => res.write(`${name} tick ${Date.now()}\n`), 200);
      req.on('close', () => clearInterval(t));
      return;
    }
    res.end(`hello from ${name}\n`);
  })
  .listen(80, host);
