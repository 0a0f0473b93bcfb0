// Remove build outputs (the paths given as arguments, relative to this package); no dependency needed.
const fs = require('fs');
const path = require('path');

for (const target of process.argv.slice(2)) {
  fs.rmSync(path.resolve(__dirname, '..', target), { recursive: true, force: true });
}
