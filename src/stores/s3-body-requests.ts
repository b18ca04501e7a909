import type { Readable } from 'node:stream';
import { PutObjectCommand, S3ServiceException, type S3Client } from '@aws-sdk/client-s3';
import { getEndpointFromInstructions } from '@smithy/core/endpoints';
import { extendedEncodeURIComponent, HttpRequest, type HttpResponse } from '@smithy/core/protocols';
import { retryMiddleware } from '@smithy/core/retry';
import { rideOutThrottling, type ThrottlePolicy } from '../core/retry.ts';
import { answerText, elementText } from './xml-scan.ts';

/** A request that carries an object's bytes: a PutObject or an UploadPart, the requests of the transfer's hot path. */
export interface BodyRequest {
  readonly operation: 'PutObject' | 'UploadPart';
  readonly key: string;
  /** UploadPart: `partNumber` and `uploadId`. */
  readonly query?: Readonly<Record<string, string>>;
  /**
   * Lower-case names: `content-md5` (it binds the body to the signature; absent only for the parts of an object the
   * transfer checks whole against the source's MD5), content headers, `x-amz-meta-*`.
   */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** The bytes, or a stream of `size` bytes opened anew for each attempt. */
  readonly body: Uint8Array | { readonly size: number; readonly open: () => Readable };
}

/** Where the bucket's body requests go and how they are signed: the client's own, taken once per store. */
interface UploadTarget {
  /** The bucket's URL: `<endpoint>/<bucket>` path-style, `https://<bucket>.s3.<region>.amazonaws.com/` virtual-hosted. */
  readonly url: URL;
  readonly sign: (request: HttpRequest) => Promise<HttpRequest>;
}

/** Sends a body request and gives the ETag the service answered with. */
export interface BodySender {
  (request: BodyRequest, signal?: AbortSignal): Promise<string | undefined>;
  /** True once the service refused an unsigned payload: a streamed body, which cannot be hashed before it is sent, would be refused too. */
  readonly signsPayloads: () => boolean;
}

/**
 * Sends PutObject and UploadPart without the S3Client's middleware stack, which costs about as much CPU again as the
 * request itself (docs/s3-writes.md). What correctness needs is the client's own, not a copy: its endpoint (resolved
 * once, path-style where an endpoint is set), its signer (credentials or the default chain, session token, clock offset), its HTTP
 * handler (sockets, connection and socket timeouts), its retry strategy (through the SDK's own retry middleware:
 * attempts, backoff with jitter on 5xx, network errors and timeouts), and 429/503 ridden out as for every command.
 * A non-2xx answer is thrown as the `S3ServiceException` the SDK would throw (status, the XML error's Code and
 * Message, `$response`), so retries, refusals and `toStoreError` read it as any other.
 *
 * A body goes out with its Content-MD5 (a whole object always; a part unless the transfer checks the whole object
 * against the source's MD5 before the commit), which SigV4 signs and the service checks against the body, so the body
 * is bound to the signature through it; SigV4's own SHA-256 of the body would be a further full pass over every byte
 * written, and `x-amz-content-sha256: UNSIGNED-PAYLOAD` skips it. Over https, TLS protects every body as well.
 * Not every S3-compatible service takes `UNSIGNED-PAYLOAD`: a body it refuses (any 4xx, or 501) is sent once more with
 * a signed payload, and when that one goes through, the rest of the run signs payloads. A streamed body cannot be
 * hashed before it is sent, so it stays unsigned: against such a service, SYNC_SINGLE_REQUEST_MAX_MB=5 sends
 * every object larger than a part in parts.
 */
export function s3BodySender(client: S3Client, bucket: string, throttling: ThrottlePolicy): BodySender {
  const { config } = client;
  let target: Promise<UploadTarget> | undefined;
  const resolveTarget = async (): Promise<UploadTarget> => {
    const endpoint = await getEndpointFromInstructions({ Bucket: bucket }, PutObjectCommand, config);
    const signer = await config.signer();
    return {
      url: endpoint.url,
      sign: async (request) => (await signer.sign(request, { signingDate: new Date(Date.now() + config.systemClockOffset) })) as HttpRequest,
    };
  };
  const retrying = retryMiddleware(config);

  let signPayloads = false;
  /** `sent.unsigned` says how the last attempt went out, decided just before it is signed: a body that waited while another was refused goes out signed. */
  const sendOnce = async (request: BodyRequest, sent: { unsigned: boolean }, signal: AbortSignal | undefined): Promise<string | undefined> => {
    target ??= resolveTarget().catch((error: unknown) => {
      target = undefined;
      throw error;
    });
    const { url, sign } = await target;
    const { body } = request;
    const unsent: HttpRequest = new HttpRequest({
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port === '' ? {} : { port: Number(url.port) }),
      method: 'PUT',
      // The SDK's path for S3's greedy `{Key+}`: each segment escaped, the slashes kept.
      path: `${url.pathname.replace(/\/$/, '')}/${request.key.split('/').map(extendedEncodeURIComponent).join('/')}`,
      query: { ...request.query, 'x-id': request.operation },
      headers: { host: url.host, 'content-type': 'application/octet-stream', ...definedFields(request.headers), 'content-length': String(body instanceof Uint8Array ? body.byteLength : body.size) },
      // A stream is opened for each attempt, just before it is sent.
      ...(body instanceof Uint8Array ? { body } : {}),
    });
    const attempt = async (args: { request: unknown }): Promise<{ response: HttpResponse; output: { $metadata: object; etag: string | undefined } }> => {
      // A stream goes on a copy: the retry middleware would not retry a request it sees carrying one.
      const toSign = body instanceof Uint8Array ? (args.request as HttpRequest) : Object.assign(HttpRequest.clone(args.request as HttpRequest), { body: body.open() });
      sent.unsigned = !signPayloads;
      // Signed: the signer hashes the body and sets the header itself.
      if (sent.unsigned) toSign.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      else delete toSign.headers['x-amz-content-sha256'];
      const { response } = (await config.requestHandler.handle(await sign(toSign), { abortSignal: signal })) as { response: HttpResponse };
      // The answer's body is read to its end either way: the socket goes back to the pool only then.
      const text = await answerText(response.body, `the ${request.operation} answer`);
      if (response.statusCode < 200 || response.statusCode > 299) throw errorAnswer(response, text);
      return { response, output: { $metadata: {}, etag: response.headers['etag'] } };
    };
    const send = (): Promise<string | undefined> =>
      retrying(attempt, { __smithy_context: signal === undefined ? {} : { abortSignal: signal } })({ input: {}, request: unsent }).then((result) => result.output.etag);
    return rideOutThrottling(send, throttling, signal);
  };

  const send = async (request: BodyRequest, signal?: AbortSignal): Promise<string | undefined> => {
    const sent = { unsigned: false };
    try {
      return await sendOnce(request, sent, signal);
    } catch (error) {
      if (!sent.unsigned || signal?.aborted === true || !refusedAsClientError(error)) throw error;
      if (!(request.body instanceof Uint8Array)) {
        // A stream cannot be signed: its refusal stands, and the caller sends such objects in (signed) parts from now on,
        // unless the service refused the bytes themselves. Parts refused signed as well set this back (below).
        if (!refusedItsDigest(error)) signPayloads = true;
        throw error;
      }
      signPayloads = true;
      try {
        return await sendOnce(request, sent, signal);
      } catch (signedError) {
        // Refused signed as well: the payload signing was not the reason.
        if (!sent.unsigned) signPayloads = false;
        throw signedError;
      }
    }
  };
  return Object.assign(send, { signsPayloads: () => signPayloads });
}

/** The fields that have a value. */
function definedFields(fields: Readonly<Record<string, string | undefined>>): Record<string, string> {
  return Object.fromEntries(Object.entries(fields).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/** The exception the SDK throws for an S3 error answer: named by its Code, with its Message and status. */
function errorAnswer(response: HttpResponse, text: string): S3ServiceException {
  const field = (tag: string): string | undefined => {
    try {
      return elementText(text, tag, 0, text.length, 'the S3 error answer') || undefined;
    } catch {
      // A body that is no XML error document: the status alone tells, as with the SDK.
      return undefined;
    }
  };
  const error = new S3ServiceException({
    name: field('Code') ?? 'Unknown',
    message: field('Message') ?? 'UnknownError',
    $fault: response.statusCode >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: response.statusCode, requestId: response.headers['x-amz-request-id'], extendedRequestId: response.headers['x-amz-id-2'] },
  });
  error.$response = response;
  return error;
}

/** The service refused the bytes for not matching their Content-MD5: nothing to do with how they were signed. */
function refusedItsDigest(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'BadDigest' || error.name === 'InvalidDigest');
}

/** An answer that may mean "not with an unsigned payload": any 4xx, or 501 Not Implemented. */
function refusedAsClientError(error: unknown): boolean {
  const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
  return status !== undefined && ((status >= 400 && status < 500) || status === 501);
}
