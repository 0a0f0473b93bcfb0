// Bundle the manager's dashboard (src/dashboard with the src/core it imports) into the one
// script its page loads. `--dev` keeps it readable and adds a source map.
const path = require('path');
const esbuild = require('esbuild');

const dev = process.argv.includes('--dev');
const outfile = path.resolve(
  __dirname, '..', '..', 'manager', 'jupyter_deploy_manager', 'static', 'dashboard', 'app.js'
);

esbuild
  .build({
    entryPoints: [path.resolve(__dirname, '..', 'src', 'dashboard', 'main.ts')],
    outfile,
    bundle: true,
    // A classic script (the page loads it with `defer`): nothing leaks into the page's globals.
    format: 'iife',
    platform: 'browser',
    target: ['es2020'],
    minify: !dev,
    sourcemap: dev ? 'linked' : false,
    legalComments: 'none',
    banner: { js: '/* jupyter-deploy dashboard: built from labextension/src/dashboard; edit the source, not this file. */' },
    logLevel: 'warning'
  })
  .then(() => console.log(`dashboard: ${path.relative(process.cwd(), outfile)}`))
  .catch(() => process.exit(1));
