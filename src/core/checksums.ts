import { createHash } from 'node:crypto';

/** Base64 MD5 of some bytes: the form Content-MD5 headers and the stores' integrity checks use. */
export function md5Base64(bytes: Uint8Array | string): string {
  return createHash('md5').update(bytes).digest('base64');
}

/** Whether an S3 ETag is that of an object uploaded in parts: `<32 hex>-<part count>`. */
export function isMultipartEtag(etag: string): boolean {
  return /^[0-9a-f]{32}-[1-9][0-9]*$/i.test(etag);
}

/** The ETag S3 gives an object uploaded in these parts: hex MD5 of the parts' binary MD5s, `-` and the part count. */
export function multipartEtag(partMd5s: readonly Uint8Array[]): string {
  const combined = createHash('md5');
  for (const md5 of partMd5s) combined.update(md5);
  return `${combined.digest('hex')}-${partMd5s.length}`;
}
