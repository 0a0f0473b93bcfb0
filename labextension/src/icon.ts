import { LabIcon } from '@jupyterlab/ui-components';

/**
 * A box lifted by an arrow: a model shipped as a service. Drawn with
 * `jp-icon3` so it follows the theme's icon colour.
 */
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 1.5 5.5 8h4.25v5.5h4.5V8h4.25z"/>
    <path d="M3 12.5h4.5v2H5v5h14v-5h-2.5v-2H21v9H3z"/>
    <path d="M8 16.25h8v1.5H8z"/>
  </g>
</svg>`;

export const deployIcon = new LabIcon({
  name: 'jupyter-deploy:deployments',
  svgstr: svg
});
