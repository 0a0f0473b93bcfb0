/**
 * The jupyter-deploy dashboard, served by the manager at `/`: services and versions, live
 * logs, tokens and users. Bundled with the core the JupyterLab sidebar uses, into the one
 * script the page loads (`static/dashboard/app.js`).
 */

import { start } from './app';

start();
