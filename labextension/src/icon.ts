import { LabIcon } from '@jupyterlab/ui-components';

import edgeSvg from '../style/icons/edge.svg';

/** The sidebar's own icon: a hub with sites around it. */
export const edgeIcon = new LabIcon({
  name: 'jupyter-edge:fleet',
  svgstr: edgeSvg
});
