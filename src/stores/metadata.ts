import type { RecordedSource } from '../core/types.ts';
import type { WriteDescription } from './store.ts';

/**
 * Metadata names under which every copy records its source. Azure allows only C# identifiers as
 * metadata names, so the same names (with underscores) serve every store.
 */
export const SOURCE_ETAG_METADATA = 'source_etag';
export const SOURCE_MODIFIED_METADATA = 'source_last_modified';

/** The metadata a copy carries: its source's ETag and LastModified. */
export function recordedSourceMetadata(description: WriteDescription): Record<string, string> {
  const metadata: Record<string, string> = { [SOURCE_ETAG_METADATA]: description.recordedSource.etag };
  if (description.recordedSource.lastModifiedMs !== undefined) {
    metadata[SOURCE_MODIFIED_METADATA] = new Date(description.recordedSource.lastModifiedMs).toISOString();
  }
  return metadata;
}

/** An ETag without the quotes HTTP puts around it. */
export function unquoteEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}

/** What a copy recorded about its source, read back from its metadata (`get` looks a name up); `undefined` when it recorded nothing. */
export function recordedSourceOf(get: (name: string) => string | undefined): RecordedSource | undefined {
  const etag = get(SOURCE_ETAG_METADATA);
  if (etag === undefined) return undefined;
  const modified = get(SOURCE_MODIFIED_METADATA);
  return { etag, ...(modified === undefined ? {} : { lastModifiedMs: Date.parse(modified) }) };
}
