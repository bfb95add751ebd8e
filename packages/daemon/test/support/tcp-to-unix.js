// Forwards TCP connections on 127.0.0.1:<port> to a unix socket. Runs inside the lab's
// "host" namespace so a daemon there reaches a control plane served by the test process
// (pathname unix sockets are not bound to a network namespace). A connection that cannot
// reach the unix socket is closed at once, like a refused TCP connect.
'use strict';
const net = require('node:net');
const [port, unixPath] = process.argv.slice(2);
const server = net.createServer((c) => {
  const u = net.connect(unixPath);
  const kill = () => {
    c.destroy();
    u.destroy();
  };
  c.on('error', kill);
  u.on('error', kill);
  c.on('close', kill);
  u.on('close', kill);
  c.pipe(u);
  u.pipe(c);
});
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\n'));
