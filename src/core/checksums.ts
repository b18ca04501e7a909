import { createHash } from 'node:crypto';

/** Base64 MD5 of some bytes: the form Content-MD5 headers and the stores' integrity checks use. */
export function md5Base64(bytes: Uint8Array | string): string {
  return createHash('md5').update(bytes).digest('base64');
}
