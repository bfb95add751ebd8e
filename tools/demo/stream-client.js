// Holds one TCP connection open to HOST:80/stream and reports every second
// how many bytes arrived, until the connection dies or the time is up.
const net = require('node:net');
const [host, seconds] = process.argv.slice(2);
const s = net.connect(80, host);
let bytes = 0;
let last = 0;
const started = Date.now();
s.setTimeout(1500);
s.on('connect', () => s.write(`GET /stream HTTP/1.1\r\nHost: ${host}\r\n\r\n`));
s.on('data', (d) => (bytes += d.length));
s.on('timeout', () => {
  console.log(`  connection stalled: no data for 1.5 s (${bytes} bytes received in total)`);
  process.exit(3);
});
s.on('error', (e) => {
  console.log(`  connection error: ${e.code || e.message}`);
  process.exit(2);
});
s.on('close', () => {
  console.log('  connection closed');
  process.exit(2);
});
const t = setInterval(() => {
  console.log(`  t=${((Date.now() - started) / 1000).toFixed(0)}s  +${bytes - last} bytes`);
  last = bytes;
  if (Date.now() - started >= Number(seconds) * 1000) {
    clearInterval(t);
    s.destroy();
    process.exit(0);
  }
}, 1000);
