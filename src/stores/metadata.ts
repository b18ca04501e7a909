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

/** The source a copy recorded in its metadata (from a listing or a HEAD), or `undefined` when it recorded none. */
export function recordedSourceOf(metadata: (name: string) => string | undefined): RecordedSource | undefined {
  const etag = metadata(SOURCE_ETAG_METADATA);
  if (etag === undefined) return undefined;
  const modified = metadata(SOURCE_MODIFIED_METADATA);
  const modifiedMs = modified === undefined ? Number.NaN : Date.parse(modified);
  return { etag, ...(Number.isNaN(modifiedMs) ? {} : { lastModifiedMs: modifiedMs }) };
}

/** An ETag without the quotes HTTP puts around it. */
export function unquoteEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}
