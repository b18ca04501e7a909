import { StoreError } from '../core/errors.ts';
import type { RecordedSource } from '../core/types.ts';
import type { UserMetadata, WriteDescription } from './store.ts';

/**
 * Metadata names under which every copy records its source. Azure allows only C# identifiers as
 * metadata names, so the same names (with underscores) serve every store. A source object's own user
 * metadata may not use them (it would be overwritten): such an object is refused, naming the entry.
 */
export const SOURCE_ETAG_METADATA = 'source_etag';
export const SOURCE_MODIFIED_METADATA = 'source_last_modified';
export const RECORDED_METADATA_NAMES: readonly string[] = [SOURCE_ETAG_METADATA, SOURCE_MODIFIED_METADATA];

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

/** What a copy stores as metadata: the user metadata as the target names it (`TargetStore.metadataFor`), then the recorded source. */
export function storedMetadata(mapped: Readonly<Record<string, string>>, description: WriteDescription): Record<string, string> {
  return { ...mapped, ...recordedSourceMetadata(description) };
}

/** A stored object's metadata without the entries that record its source (`recordedSourceOf` reads those). */
export function withoutRecordedSource(metadata: UserMetadata): Record<string, string> {
  const rest: Record<string, string> = {};
  for (const [name, value] of Object.entries(metadata)) if (!RECORDED_METADATA_NAMES.includes(name.toLowerCase())) rest[name] = value;
  return rest;
}

/**
 * Maps user metadata to a target's names: `rename` gives the target's name for a source name, or why
 * it has none. Reserved names, names two source names would share, and values that are not printable
 * ASCII (what every store accepts in a header) cannot be mapped: the error names each, and the object.
 */
export function mapUserMetadata(store: string, key: string, userMetadata: UserMetadata, rename: (name: string) => string | { readonly problem: string }): Record<string, string> {
  const mapped: Record<string, string> = {};
  const sourceOf = new Map<string, string>();
  const problems: string[] = [];
  for (const [name, value] of Object.entries(userMetadata)) {
    const target = rename(name);
    if (typeof target !== 'string') problems.push(`${JSON.stringify(name)} ${target.problem}`);
    else if (RECORDED_METADATA_NAMES.includes(target.toLowerCase())) problems.push(`${JSON.stringify(name)} is a name this tool records its source under`);
    else if (sourceOf.has(target.toLowerCase())) problems.push(`${JSON.stringify(name)} and ${JSON.stringify(sourceOf.get(target.toLowerCase()))} would both be stored as ${JSON.stringify(target)}`);
    else if (!/^[\x20-\x7e]*$/.test(value)) problems.push(`${JSON.stringify(name)} has a value that is not printable ASCII`);
    else {
      sourceOf.set(target.toLowerCase(), name);
      mapped[target] = value;
    }
  }
  if (problems.length > 0) {
    throw new StoreError({ store, operation: 'map metadata', key, scope: 'unmirrorable', detail: `user metadata cannot be mirrored: ${problems.join('; ')}; nothing was written (rename the metadata at the source)` });
  }
  return mapped;
}

/**
 * Azure's metadata names must be C# identifiers: S3's `-` (the usual word separator, not allowed) becomes
 * `_`; a name still not an identifier after that (a `.`, a leading digit) cannot be mapped.
 */
export function azureMetadataName(name: string): string | { readonly problem: string } {
  const mapped = name.replace(/-/g, '_');
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(mapped) ? mapped : { problem: 'is not a C# identifier even with - written as _, as Azure metadata names must be' };
}

/** An ETag without the quotes HTTP puts around it. */
export function unquoteEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}
