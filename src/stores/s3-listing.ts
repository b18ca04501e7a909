import { ListingFormatError, elementText } from './xml-scan.ts';

/**
 * Reads one ListObjectsV2 answer (`ListBucketResult` XML) into the fields a mirror needs, at a
 * fraction of the AWS SDK's general deserialisation CPU. Only a complete document is accepted: a body
 * cut short is an error, never a shorter listing.
 * See https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html (response syntax).
 */

export interface ListedS3Object {
  readonly key: string;
  readonly size: number;
  readonly lastModifiedMs: number;
  /** As sent, quotes included. */
  readonly etag: string;
  /** `STANDARD`, `GLACIER`, `DEEP_ARCHIVE`, ...; absent when the answer does not say (STANDARD). */
  readonly storageClass: string | undefined;
  /** Present when the listing was asked for restore status and the object has a restored copy (or one on its way). */
  readonly restore: { readonly inProgress: boolean; readonly expiresMs: number | undefined } | undefined;
}

export interface S3ListingPage {
  readonly objects: readonly ListedS3Object[];
  readonly isTruncated: boolean;
  readonly nextContinuationToken: string | undefined;
}

const DOCUMENT = 'the ListObjectsV2 answer';

export function parseListObjectsV2(xml: string): S3ListingPage {
  const end = xml.lastIndexOf('</ListBucketResult>');
  if (xml.indexOf('<ListBucketResult') < 0 || end < 0) throw new ListingFormatError(`${DOCUMENT} is not a complete ListBucketResult document`);
  // Keys come URL-encoded only when asked for (encoding-type=url), which this tool never does.
  if (elementText(xml, 'EncodingType', 0, end, DOCUMENT) !== undefined) throw new ListingFormatError(`${DOCUMENT} has encoded keys, which were not asked for`);
  const objects: ListedS3Object[] = [];
  let cursor = 0;
  for (;;) {
    const open = xml.indexOf('<Contents>', cursor);
    if (open < 0 || open > end) break;
    const close = xml.indexOf('</Contents>', open);
    if (close < 0 || close > end) throw new ListingFormatError(`a Contents element of ${DOCUMENT} has no end`);
    objects.push(parseContents(xml, open, close));
    cursor = close + '</Contents>'.length;
  }
  const truncated = elementText(xml, 'IsTruncated', 0, end, DOCUMENT);
  if (truncated !== 'true' && truncated !== 'false') throw new ListingFormatError(`${DOCUMENT} does not say whether it is truncated`);
  // Text is escaped, so a tag found anywhere is the element itself, never part of a key.
  const token = elementText(xml, 'NextContinuationToken', 0, end, DOCUMENT);
  return { objects, isTruncated: truncated === 'true', nextContinuationToken: token === '' ? undefined : token };
}

function parseContents(xml: string, start: number, end: number): ListedS3Object {
  const key = elementText(xml, 'Key', start, end, DOCUMENT);
  if (key === undefined) throw new ListingFormatError(`a Contents element of ${DOCUMENT} has no Key`);
  const size = Number(elementText(xml, 'Size', start, end, DOCUMENT));
  const lastModifiedMs = Date.parse(elementText(xml, 'LastModified', start, end, DOCUMENT) ?? '');
  const etag = elementText(xml, 'ETag', start, end, DOCUMENT);
  if (!Number.isSafeInteger(size) || Number.isNaN(lastModifiedMs) || etag === undefined) {
    throw new ListingFormatError(`${DOCUMENT} lacks the size, time or ETag of ${JSON.stringify(key)}`);
  }
  const storageClass = elementText(xml, 'StorageClass', start, end, DOCUMENT);
  const inProgress = elementText(xml, 'IsRestoreInProgress', start, end, DOCUMENT);
  const expiry = elementText(xml, 'RestoreExpiryDate', start, end, DOCUMENT);
  const restore = inProgress === undefined ? undefined : { inProgress: inProgress === 'true', expiresMs: expiry === undefined ? undefined : Date.parse(expiry) };
  return { key, size, lastModifiedMs, etag, storageClass: storageClass === '' ? undefined : storageClass, restore };
}

/** Storage classes whose objects cannot be read until restored (GetObject answers 403 InvalidObjectState). */
const ARCHIVE_CLASSES = new Set(['GLACIER', 'DEEP_ARCHIVE']);

/**
 * Whether a listed object is archived and not restored: its bytes cannot be read. Intelligent-Tiering's
 * archive tiers do not show in a listing; such an object is found out when it is read.
 */
export function isArchived(object: Pick<ListedS3Object, 'storageClass' | 'restore'>): boolean {
  if (object.storageClass === undefined || !ARCHIVE_CLASSES.has(object.storageClass)) return false;
  return object.restore === undefined || object.restore.inProgress || object.restore.expiresMs === undefined;
}
