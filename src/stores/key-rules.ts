/**
 * Which S3 keys a target cannot hold byte-exact. Such a key is never written (it would land under
 * another object's name, or fail): the planner refuses it, one failure per key per run, naming why.
 * See docs/exactness.md, "Keys a target cannot hold verbatim".
 */

/** A `.` or `..` path segment: URL building (WHATWG URL, which the Azure SDK and Node's HTTP clients use) resolves it, so `a/./b` would be sent as `a/b`. */
function dotSegmentProblem(key: string): string | undefined {
  const segment = key.split('/').find((part) => part === '.' || part === '..');
  return segment === undefined ? undefined : `it has a ${JSON.stringify(segment)} path segment, which URLs resolve (a/./b is sent as a/b, a/../b as b): it would be written under another key`;
}

/** Azure Blob: what the service, or the SDK's URLs, would turn into another name (or reject). */
export function azureKeyProblem(key: string): string | undefined {
  if (key.includes('\\')) return 'Azure stores "\\" as "/" in blob names: it would be written under another key';
  const dots = dotSegmentProblem(key);
  if (dots !== undefined) return dots;
  // Azure's naming rules: avoid names that end with a dot, a slash, or a combination; a trailing dot is dropped.
  if (/\.\/*$/.test(key)) return 'Azure drops a trailing "." from blob names: it would be written under another key';
  if (/[\u0000-\u001f\u007f-\u009f]/.test(key)) return 'Azure does not allow control characters in blob names';
  if (key.split('/').length > 254) return 'Azure allows at most 254 path segments in a blob name';
  return undefined;
}

/** OCI Object Storage (S3-compatible API): its object names exclude line feed, carriage return and NULL. */
export function ociKeyProblem(key: string): string | undefined {
  if (/[\n\r\0]/.test(key)) return 'OCI object names cannot contain a line feed, carriage return or NULL character';
  return dotSegmentProblem(key);
}
