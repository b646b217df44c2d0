// Serves a folder (build-web/site) on 127.0.0.1 with the types a browser needs for
// WebAssembly: scripts/web --serve runs it, the browser test (tests/web) imports it.
//   node app/web/serve.mjs DIR [PORT]
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.wasm': 'application/wasm',
  '.data': 'application/octet-stream', '.png': 'image/png',
};

// Resolves to {server, url} once listening (port 0: any free port).
export function serve(dir, port = 0) {
  const root = path.resolve(dir);
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = path.join(root, rel.endsWith('/') ? rel + 'index.html' : rel);
    if (!file.startsWith(root + path.sep)) { res.writeHead(403).end(); return; }
    fs.readFile(file, (err, body) => {
      if (err) { res.writeHead(404).end(`${rel}: not found`); return; }
      res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}/` }));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir, port = '8000'] = process.argv.slice(2);
  if (!dir || !fs.existsSync(path.join(dir, 'index.html'))) {
    console.error(`serve.mjs: '${dir ?? ''}' holds no index.html (build it with scripts/web)`);
    process.exit(2);
  }
  serve(dir, Number(port)).then(({ url }) => console.log(`kvscope: serving ${dir} at ${url} (Ctrl+C stops)`),
    (e) => { console.error(`serve.mjs: port ${port}: ${e.message}`); process.exit(1); });
}
