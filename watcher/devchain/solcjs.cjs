// Runs solc-js on a standard-JSON input read from stdin and writes the standard-JSON output to stdout.
// Usage: node solcjs.cjs <node_modules dir> [extra base dir ...]
// Imports that are not in the input's sources are read from the base dirs, in order, after solc has
// applied the input's settings.remappings; this is how npm packages reach each other's sources.
'use strict';

const fs = require('fs');
const path = require('path');

const [nodeModules, ...extraBases] = process.argv.slice(2);
const bases = [nodeModules, ...extraBases].map((p) => path.resolve(p));
const solc = require(path.join(bases[0], 'solc'));

function findImports(unitName) {
  for (const base of bases) {
    const full = path.resolve(base, unitName);
    // A source unit name must stay inside its base dir; anything else is a bad import, not a file to read.
    if (!full.startsWith(base + path.sep)) continue;
    if (fs.existsSync(full)) return { contents: fs.readFileSync(full, 'utf8') };
  }
  return { error: `File not found in ${bases.join(', ')}: ${unitName}` };
}

const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const input = Buffer.concat(chunks).toString('utf8');
  const output = solc.compile(input, { import: findImports });
  process.stdout.write(output);
  process.stdout.write('\n', () => process.exit(0));
});
