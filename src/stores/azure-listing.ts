/**
 * Reads one page of a List Blobs answer (`EnumerationResults` XML) into the few fields a mirror
 * needs. The SDK's general XML deserialisation costs about 0.13 ms of CPU per blob (over two minutes
 * for a million-blob container, every run); this reader scans the text once, a tenth of that.
 * It accepts only a complete document: a body cut short is an error, never a shorter listing.
 * See https://learn.microsoft.com/rest/api/storageservices/list-blobs (response body).
 */

export interface ListedBlob {
  readonly name: string;
  readonly contentLength: number;
  readonly lastModifiedMs: number;
  /** As the service sends it (Azure's ETags carry no quotes in listings). */
  readonly etag: string;
  /** Only the metadata entries asked for, by name. */
  readonly metadata: ReadonlyMap<string, string>;
}

export interface BlobListingPage {
  readonly blobs: readonly ListedBlob[];
  /** Absent at the end of the listing. */
  readonly nextMarker: string | undefined;
}

export class ListingFormatError extends Error {
  override readonly name = 'ListingFormatError';
}

/** Parses one page; `metadataNames` are the metadata entries to keep. */
export function parseBlobListing(xml: string, metadataNames: readonly string[]): BlobListingPage {
  const end = xml.lastIndexOf('</EnumerationResults>');
  if (xml.indexOf('<EnumerationResults') < 0 || end < 0) throw new ListingFormatError('the List Blobs answer is not a complete EnumerationResults document');
  const blobs: ListedBlob[] = [];
  const blobsStart = xml.indexOf('<Blobs>');
  const blobsEnd = xml.indexOf('</Blobs>');
  // An empty container answers `<Blobs />`.
  if (blobsStart >= 0) {
    if (blobsEnd < blobsStart) throw new ListingFormatError('the List Blobs answer has no end of its Blobs element');
    let cursor = blobsStart;
    for (;;) {
      const open = xml.indexOf('<Blob>', cursor);
      if (open < 0 || open > blobsEnd) break;
      const close = xml.indexOf('</Blob>', open);
      if (close < 0 || close > blobsEnd) throw new ListingFormatError('a Blob element of the List Blobs answer has no end');
      blobs.push(parseBlob(xml, open + '<Blob>'.length, close, metadataNames));
      cursor = close + '</Blob>'.length;
    }
  }
  const marker = elementText(xml, 'NextMarker', blobsEnd >= 0 ? blobsEnd : 0, end);
  return { blobs, nextMarker: marker === undefined || marker === '' ? undefined : marker };
}

function parseBlob(xml: string, start: number, end: number, metadataNames: readonly string[]): ListedBlob {
  const name = elementText(xml, 'Name', start, end);
  if (name === undefined) throw new ListingFormatError('a Blob element of the List Blobs answer has no Name');
  const contentLength = Number(elementText(xml, 'Content-Length', start, end));
  const lastModifiedMs = Date.parse(elementText(xml, 'Last-Modified', start, end) ?? '');
  const etag = elementText(xml, 'Etag', start, end);
  if (!Number.isSafeInteger(contentLength) || Number.isNaN(lastModifiedMs) || etag === undefined) {
    throw new ListingFormatError(`the List Blobs answer lacks the size, time or ETag of ${JSON.stringify(name)}`);
  }
  const metadata = new Map<string, string>();
  const metadataStart = xml.indexOf('<Metadata>', start);
  if (metadataStart >= 0 && metadataStart < end) {
    for (const metadataName of metadataNames) {
      const value = elementText(xml, metadataName, metadataStart, end);
      if (value !== undefined) metadata.set(metadataName, value);
    }
  }
  return { name, contentLength, lastModifiedMs, etag, metadata };
}

/**
 * The text of the first `<tag>` (or `<tag attributes>`) between `start` and `end`, entities decoded;
 * `Encoded="true"` (names with characters XML cannot carry) is percent-decoded as the service encodes it.
 * `undefined` when absent; `''` for an empty element.
 */
function elementText(xml: string, tag: string, start: number, end: number): string | undefined {
  let open = xml.indexOf(`<${tag}`, start);
  // Skip longer names sharing the prefix (`<Name` must not match `<NameX>`).
  while (open >= 0 && open < end) {
    const after = xml.charCodeAt(open + tag.length + 1);
    if (after === GREATER_THAN || after === SPACE || after === SLASH) break;
    open = xml.indexOf(`<${tag}`, open + 1);
  }
  if (open < 0 || open >= end) return undefined;
  const openEnd = xml.indexOf('>', open);
  if (openEnd < 0 || openEnd >= end) throw new ListingFormatError(`an unfinished <${tag}> in the List Blobs answer`);
  if (xml.charCodeAt(openEnd - 1) === SLASH) return '';
  const close = xml.indexOf(`</${tag}>`, openEnd);
  if (close < 0 || close > end) throw new ListingFormatError(`<${tag}> has no end in the List Blobs answer`);
  const text = decodeEntities(xml.slice(openEnd + 1, close));
  return /\bEncoded="true"/.test(xml.slice(open, openEnd)) ? decodeURIComponent(text) : text;
}

const GREATER_THAN = 0x3e;
const SPACE = 0x20;
const SLASH = 0x2f;
const NAMED_ENTITIES: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** XML's five named entities and numeric character references. */
export function decodeEntities(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, entity: string) => {
    if (entity.startsWith('#x')) return String.fromCodePoint(Number.parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(Number.parseInt(entity.slice(1), 10));
    const named = NAMED_ENTITIES[entity];
    if (named === undefined) throw new ListingFormatError(`unknown XML entity ${whole} in the List Blobs answer`);
    return named;
  });
}
