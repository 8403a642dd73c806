/**
 * The AWS query protocol as the pinned SDK writes it for SNS: a form-encoded body with
 * `Action`, `Version` and the input members, lists as `Name.member.N`, maps as
 * `Name.entry.N.key` / `.value` (or the member names of the map's shape, e.g.
 * `MessageAttributes.entry.N.Name` / `.Value.DataType`). Replies are XML:
 * `<{Action}Response><{Action}Result>…</{Action}Result><ResponseMetadata>…`, errors
 * `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.
 */

type Tree = Map<string, Tree | string>;

function isIndex(key: string): boolean {
  return /^[1-9]\d*$/.test(key);
}

function convert(node: Tree | string): unknown {
  if (typeof node === 'string') return node;
  const keys = [...node.keys()];
  if (keys.length === 1 && (keys[0] === 'member' || keys[0] === 'entry')) {
    const inner = node.get(keys[0] as string);
    if (inner instanceof Map && [...inner.keys()].every(isIndex)) {
      const items = [...inner.entries()].sort((a, b) => Number(a[0]) - Number(b[0])).map(([, v]) => convert(v));
      if (keys[0] === 'member') return items;
      const pairs: [string, unknown][] = [];
      for (const item of items) {
        if (item === null || typeof item !== 'object' || Array.isArray(item)) continue;
        const entry = item as Record<string, unknown>;
        const key = entry.key ?? entry.Name;
        if (typeof key === 'string') pairs.push([key, entry.value ?? entry.Value]);
      }
      return Object.fromEntries(pairs);
    }
  }
  return Object.fromEntries(keys.map((k) => [k, convert(node.get(k) as Tree | string)]));
}

/**
 * Turns a form body into the nested shape of the operation's input (lists as arrays, maps
 * as objects). `Action` and `Version` stay at the top level.
 */
export function parseQueryForm(body: string): Record<string, unknown> {
  const root: Tree = new Map();
  for (const [key, value] of new URLSearchParams(body)) {
    const parts = key.split('.');
    let node = root;
    for (const part of parts.slice(0, -1)) {
      let child = node.get(part);
      if (!(child instanceof Map)) {
        child = new Map();
        node.set(part, child);
      }
      node = child;
    }
    const last = parts.at(-1) as string;
    if (!(node.get(last) instanceof Map)) node.set(last, value);
  }
  return convert(root) as Record<string, unknown>;
}

/** Escapes text for XML element content. */
export function xmlEscape(text: string): string {
  return text.replace(/[&<>"'\r]/g, (c) => {
    switch (c) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      case "'":
        return '&apos;';
      default:
        return '&#13;';
    }
  });
}

/** A map written as `<entry><key/><value/></entry>` elements (SNS attribute maps). */
export class XmlMap {
  readonly entries: Readonly<Record<string, string>>;
  constructor(entries: Readonly<Record<string, string>>) {
    this.entries = entries;
  }
}

/** Writes `value` as XML content: objects as child elements, arrays as `<member>` items. */
export function toXml(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (value instanceof XmlMap) {
    return Object.entries(value.entries)
      .map(([k, v]) => `<entry><key>${xmlEscape(k)}</key><value>${xmlEscape(v)}</value></entry>`)
      .join('');
  }
  if (Array.isArray(value)) return value.map((item) => `<member>${toXml(item)}</member>`).join('');
  if (typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `<${k}>${toXml(v)}</${k}>`)
      .join('');
  }
  return xmlEscape(String(value));
}
