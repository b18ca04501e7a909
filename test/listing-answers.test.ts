import { describe, expect, it } from 'vitest';
import { parseBlobListing } from '../src/stores/azure-listing.ts';
import { isArchived, parseListObjectsV2 } from '../src/stores/s3-listing.ts';
import { ListingFormatError, decodeEntities } from '../src/stores/xml-scan.ts';

const METADATA = ['source_etag', 'source_last_modified'];

/** A List Blobs answer shaped as the REST reference documents it (version 2021-12-02, include=metadata). */
function document(blobs: string, nextMarker = '<NextMarker />'): string {
  return (
    '\uFEFF<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="https://account.blob.core.windows.net/" ContainerName="mirror">' +
    `<MaxResults>5000</MaxResults><Blobs>${blobs}</Blobs>${nextMarker}</EnumerationResults>`
  );
}

function blob(name: string, options: { encoded?: boolean; size?: number; metadata?: string } = {}): string {
  return (
    `<Blob><Name${options.encoded === true ? ' Encoded="true"' : ''}>${name}</Name><Properties>` +
    '<Creation-Time>Mon, 02 Nov 2026 10:00:00 GMT</Creation-Time><Last-Modified>Tue, 03 Nov 2026 11:22:33 GMT</Last-Modified>' +
    `<Etag>0x8DCB1A2B3C4D5E6</Etag><Content-Length>${options.size ?? 42}</Content-Length><Content-Type>application/zip</Content-Type>` +
    '<Content-Encoding /><Content-Language /><Content-MD5>1B2M2Y8AsgTpgAmY7PhCfg==</Content-MD5><Cache-Control />' +
    '<BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>' +
    `<ServerEncrypted>true</ServerEncrypted></Properties>${options.metadata ?? '<Metadata />'}<OrMetadata /></Blob>`
  );
}

describe('parseBlobListing (Azure List Blobs)', () => {
  it('reads names, sizes, times, ETags and the recorded source metadata of every blob, and the next marker', () => {
    const page = parseBlobListing(
      document(
        blob('releases/app 1.0 &amp; &lt;beta&gt; &quot;q&quot; &apos;s&apos; &#xE9;&#233;.zip', {
          size: 1_234_567_890_123,
          metadata: '<Metadata><source_etag>9e107d9d372bb6826bd81d3542a419d6</source_etag><source_last_modified>2026-11-03T11:00:00.000Z</source_last_modified><other>x</other></Metadata>',
        }) + blob('plain.txt'),
        '<NextMarker>2!96!MDAwMDI0IXJlbGVhc2VzL2FwcC56aXAhMDAwMDI4ITk5OTktMTItMzFUMjM6NTk6NTkuOTk5OTk5OVoh</NextMarker>',
      ),
      METADATA,
    );
    expect(page.nextMarker).toBe('2!96!MDAwMDI0IXJlbGVhc2VzL2FwcC56aXAhMDAwMDI4ITk5OTktMTItMzFUMjM6NTk6NTkuOTk5OTk5OVoh');
    expect(page.blobs).toHaveLength(2);
    const [first, second] = page.blobs;
    expect(first).toEqual({
      name: 'releases/app 1.0 & <beta> "q" \'s\' éé.zip',
      contentLength: 1_234_567_890_123,
      lastModifiedMs: Date.parse('2026-11-03T11:22:33Z'),
      etag: '0x8DCB1A2B3C4D5E6',
      metadata: new Map([
        ['source_etag', '9e107d9d372bb6826bd81d3542a419d6'],
        ['source_last_modified', '2026-11-03T11:00:00.000Z'],
      ]),
    });
    expect(second!.name).toBe('plain.txt');
    expect(second!.metadata.size).toBe(0);
  });

  it('percent-decodes names the service had to encode (characters XML cannot carry)', () => {
    const page = parseBlobListing(document(blob('bad%01name%EF%BF%BE.bin', { encoded: true })), METADATA);
    expect(page.blobs[0]!.name).toBe('bad\u0001name\uFFFE.bin');
  });

  it('reads an empty container and the last page (no next marker)', () => {
    expect(parseBlobListing(document(''), METADATA)).toEqual({ blobs: [], nextMarker: undefined });
    const empty = '<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="x" ContainerName="c"><Blobs /><NextMarker /></EnumerationResults>';
    expect(parseBlobListing(empty, METADATA)).toEqual({ blobs: [], nextMarker: undefined });
  });

  it('refuses an answer cut short or missing a field, rather than returning a shorter listing', () => {
    const whole = document(blob('a.zip') + blob('b.zip'), '<NextMarker>next</NextMarker>');
    for (const cut of [whole.length - 5, whole.indexOf('b.zip') + 3, whole.indexOf('</Blobs>') + 2, 10]) {
      expect(() => parseBlobListing(whole.slice(0, cut), METADATA)).toThrow(ListingFormatError);
    }
    expect(() => parseBlobListing(document(blob('a.zip').replace(/<Content-Length>42<\/Content-Length>/, '')), METADATA)).toThrow(/size, time or ETag of "a.zip"/);
    expect(() => parseBlobListing(document(blob('a.zip').replace('<Name>a.zip</Name>', '')), METADATA)).toThrow(/no Name/);
  });

  it('decodes only XML entities and refuses unknown ones', () => {
    expect(decodeEntities('a &amp;amp; b &#x1F600;', 'a test')).toBe('a &amp; b \u{1F600}');
    expect(() => decodeEntities('&nbsp;', 'a test')).toThrow('unknown XML entity &nbsp; in a test');
  });
});

/** A ListObjectsV2 answer shaped as the S3 API reference documents it. */
function bucketListing(contents: string, tail = '<IsTruncated>false</IsTruncated>'): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>artifacts</Name><Prefix></Prefix>' +
    `<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>${tail}${contents}</ListBucketResult>`
  );
}

function contents(key: string, size = 434_234): string {
  return (
    `<Contents><Key>${key}</Key><LastModified>2026-10-12T17:50:30.000Z</LastModified><ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>` +
    `<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm><Size>${size}</Size><Owner><ID>abc</ID><DisplayName>x</DisplayName></Owner><StorageClass>STANDARD</StorageClass></Contents>`
  );
}

describe('parseListObjectsV2 (S3 and OCI)', () => {
  it('reads keys, sizes, times and ETags, and where the next page starts', () => {
    const page = parseListObjectsV2(bucketListing(contents('installers/a &amp; b &lt;1&gt;.msi', 5_000_000_000) + contents('z.zip'), '<IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>'));
    expect(page).toEqual({
      objects: [
        { key: 'installers/a & b <1>.msi', size: 5_000_000_000, lastModifiedMs: Date.parse('2026-10-12T17:50:30Z'), etag: '"fba9dede5f27731c9771645a39863328"', storageClass: 'STANDARD', restore: undefined },
        { key: 'z.zip', size: 434_234, lastModifiedMs: Date.parse('2026-10-12T17:50:30Z'), etag: '"fba9dede5f27731c9771645a39863328"', storageClass: 'STANDARD', restore: undefined },
      ],
      isTruncated: true,
      nextContinuationToken: '1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=',
    });
  });

  it('reads the storage class and restore status: an archived object is readable only once restored', () => {
    const entry = (key: string, extra: string): string => `<Contents><Key>${key}</Key><LastModified>2026-10-12T17:50:30.000Z</LastModified><ETag>"e"</ETag><Size>1</Size>${extra}</Contents>`;
    const page = parseListObjectsV2(bucketListing(
      entry('cold', '<StorageClass>GLACIER</StorageClass>') +
        entry('deep', '<StorageClass>DEEP_ARCHIVE</StorageClass><RestoreStatus><IsRestoreInProgress>true</IsRestoreInProgress></RestoreStatus>') +
        entry('restored', '<StorageClass>GLACIER</StorageClass><RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress><RestoreExpiryDate>2026-12-12T00:00:00.000Z</RestoreExpiryDate></RestoreStatus>') +
        entry('instant', '<StorageClass>GLACIER_IR</StorageClass>') +
        entry('plain', ''),
    ));
    expect(page.objects.map((object) => [object.key, isArchived(object)])).toEqual([['cold', true], ['deep', true], ['restored', false], ['instant', false], ['plain', false]]);
  });

  it('reads an empty bucket, and a last page with the token after the objects', () => {
    expect(parseListObjectsV2(bucketListing(''))).toEqual({ objects: [], isTruncated: false, nextContinuationToken: undefined });
    const page = parseListObjectsV2(bucketListing(contents('a') + '<NextContinuationToken>t2</NextContinuationToken>', '<IsTruncated>true</IsTruncated>'));
    expect(page.nextContinuationToken).toBe('t2');
  });

  it('refuses an answer cut short, without IsTruncated, or with keys encoded that were not asked for', () => {
    const whole = bucketListing(contents('a') + contents('b'));
    for (const cut of [whole.length - 3, whole.indexOf('<Key>b') + 4, 30]) expect(() => parseListObjectsV2(whole.slice(0, cut))).toThrow(ListingFormatError);
    expect(() => parseListObjectsV2(bucketListing(contents('a'), ''))).toThrow(/does not say whether it is truncated/);
    expect(() => parseListObjectsV2(bucketListing(contents('a%20b'), '<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>'))).toThrow(/encoded keys/);
    expect(() => parseListObjectsV2(bucketListing(contents('a').replace('<Size>434234</Size>', '')))).toThrow(/size, time or ETag of "a"/);
  });
});
