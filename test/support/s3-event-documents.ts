/** S3 event documents as AWS sends them, for the tests, the demo and the benchmark. */

export type EventKind = 'created' | 'deleted';

/** An EventBridge S3 event ("Object Created" / "Object Deleted"), the key as given. */
export function eventBridgeEvent(bucket: string, key: string, kind: EventKind, time = new Date()): Record<string, unknown> {
  return {
    version: '0',
    id: crypto.randomUUID(),
    'detail-type': kind === 'created' ? 'Object Created' : 'Object Deleted',
    source: 'aws.s3',
    account: '123456789012',
    time: time.toISOString(),
    region: 'us-east-1',
    resources: [`arn:aws:s3:::${bucket}`],
    detail: {
      version: '0',
      bucket: { name: bucket },
      object: kind === 'created' ? { key, size: 1, etag: 'd41d8cd98f00b204e9800998ecf8427e', sequencer: '00617F08299329D189' } : { key, sequencer: '00617F08299329D189' },
      'request-id': 'N4N7GDK58NMKJ12R',
      requester: '123456789012',
      reason: kind === 'created' ? 'PutObject' : 'DeleteObject',
    },
  };
}

/** The key as S3 notifications carry it: form-encoded (a space is `+`, a plus `%2B`). */
export function formEncoded(key: string): string {
  return encodeURIComponent(key).replaceAll('%20', '+').replaceAll('%2F', '/');
}

/** One record of an S3 notification document (SNS, SQS, Lambda), the key form-encoded. */
export function notificationRecord(bucket: string, key: string, kind: EventKind, time = new Date()): Record<string, unknown> {
  return {
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    awsRegion: 'us-east-1',
    eventTime: time.toISOString(),
    eventName: kind === 'created' ? 'ObjectCreated:Put' : 'ObjectRemoved:Delete',
    userIdentity: { principalId: 'AWS:EXAMPLE' },
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: 'artifacts-sync',
      bucket: { name: bucket, arn: `arn:aws:s3:::${bucket}` },
      object: { key: formEncoded(key), ...(kind === 'created' ? { size: 1, eTag: 'd41d8cd98f00b204e9800998ecf8427e' } : {}), sequencer: '0055AED6DCD90281E5' },
    },
  };
}

/** What S3 sends once when a notification is configured. */
export function testEvent(bucket: string): Record<string, unknown> {
  return { Service: 'Amazon S3', Event: 's3:TestEvent', Time: new Date().toISOString(), Bucket: bucket, RequestId: '5582815E1AEA5ADF', HostId: '8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE' };
}
