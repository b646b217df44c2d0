// Development-time cross-check: the JS encoder of the npm package gpt-3-encoder
// (an independent port of encoder.py) must give the ids of expected.json.
//   npm pack gpt-3-encoder@1.1.4 && tar xzf gpt-3-encoder-1.1.4.tgz
//   node check_with_node.js ./package
const path = require('path');
const enc = require(path.resolve(process.argv[2], 'Encoder.js'));
const cases = require('./expected.json');
let bad = 0;
for (const c of cases) {
  const ids = enc.encode(c.text);
  if (JSON.stringify(ids) !== JSON.stringify(c.ids)) {
    bad++;
    console.log('MISMATCH', JSON.stringify(c.text), JSON.stringify(ids), JSON.stringify(c.ids));
  }
  if (enc.decode(ids) !== c.text) { bad++; console.log('ROUNDTRIP', JSON.stringify(c.text)); }
}
console.log(`${cases.length - bad} passed, ${bad} failed`);
process.exit(bad ? 1 : 0);
