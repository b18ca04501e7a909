/**
 * Just enough XML reading for the stores' listing answers: flat, known documents whose text the
 * service escapes. Finds elements by name between two offsets; never builds a tree.
 */

export class ListingFormatError extends Error {
  override readonly name = 'ListingFormatError';
}

/** The whole text of a listing answer's body, as an SDK hands it over: bytes, a string, or a stream of either. */
export async function answerText(body: unknown, document: string): Promise<string> {
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array) return new TextDecoder().decode(body);
  if (typeof body === 'object' && body !== null && Symbol.asyncIterator in body) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of body as AsyncIterable<Uint8Array | string>) chunks.push(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk);
    return new TextDecoder().decode(Buffer.concat(chunks));
  }
  throw new ListingFormatError(`${document} has a body this tool cannot read`);
}

/**
 * The text of the first `<tag>` (or `<tag attributes>`) between `start` and `end`, entities decoded;
 * `Encoded="true"` (Azure's names with characters XML cannot carry) is percent-decoded as the service
 * encodes it. `undefined` when absent; `''` for an empty element. `document` names the answer in errors.
 */
export function elementText(xml: string, tag: string, start: number, end: number, document: string): string | undefined {
  // Searched within the region alone: an element absent from one entry must not cost a scan of the rest of the
  // answer (a thousand entries per page made that quadratic: 1.1 s of CPU for a no-op over 10,000 objects).
  const region = xml.slice(start, end);
  let open = region.indexOf(`<${tag}`);
  // Skip longer names sharing the prefix (`<Name` must not match `<NameX>`).
  while (open >= 0) {
    const after = region.charCodeAt(open + tag.length + 1);
    if (after === GREATER_THAN || after === SPACE || after === SLASH) break;
    open = region.indexOf(`<${tag}`, open + 1);
  }
  if (open < 0) return undefined;
  const openEnd = region.indexOf('>', open);
  if (openEnd < 0) throw new ListingFormatError(`an unfinished <${tag}> in ${document}`);
  if (region.charCodeAt(openEnd - 1) === SLASH) return '';
  const close = region.indexOf(`</${tag}>`, openEnd);
  if (close < 0) throw new ListingFormatError(`<${tag}> has no end in ${document}`);
  const text = decodeEntities(region.slice(openEnd + 1, close), document);
  return /\bEncoded="true"/.test(region.slice(open, openEnd)) ? decodeURIComponent(text) : text;
}

const GREATER_THAN = 0x3e;
const SPACE = 0x20;
const SLASH = 0x2f;
const NAMED_ENTITIES: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** XML's five named entities and numeric character references. */
export function decodeEntities(text: string, document: string): string {
  if (!text.includes('&')) return text;
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, entity: string) => {
    if (entity.startsWith('#x')) return String.fromCodePoint(Number.parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(Number.parseInt(entity.slice(1), 10));
    const named = NAMED_ENTITIES[entity];
    if (named === undefined) throw new ListingFormatError(`unknown XML entity ${whole} in ${document}`);
    return named;
  });
}
