/**
 * The few DOM helpers the dashboard is drawn with: no framework, so the page stays one
 * small script the manager serves itself.
 */

type Handler = (event: Event) => void;

export type Child = Node | string | number | null | undefined | false | Child[];

/**
 * `class`, `text`, `dataset` and `on` (event handlers) are set as such; anything else is
 * an attribute (true: present and empty; false, null or undefined: left out).
 */
export interface IAttrs {
  class?: string;
  text?: string;
  dataset?: Record<string, string>;
  on?: Record<string, Handler>;
  [attribute: string]:
    | string
    | number
    | boolean
    | null
    | undefined
    | Record<string, string>
    | Record<string, Handler>;
}

/** The page's element `id`: the page and its script ship together, so a missing one is a bug. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) {
    throw new Error(`jupyter-deploy dashboard: the page has no #${id}`);
  }
  return node as T;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: IAttrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (key === 'class') {
      node.className = String(value);
    } else if (key === 'text') {
      node.textContent = String(value);
    } else if (key === 'dataset') {
      Object.assign(node.dataset, value);
    } else if (key === 'on') {
      for (const [type, handler] of Object.entries(value as Record<string, Handler>)) {
        node.addEventListener(type, handler);
      }
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    if (Array.isArray(child)) {
      append(node, child);
    } else {
      node.appendChild(
        child instanceof Node ? child : document.createTextNode(String(child))
      );
    }
  }
}

export function show(node: HTMLElement, visible: boolean): void {
  node.hidden = !visible;
}
