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

/** A GetObject with the given headers (`range`, `if-match`): the answer's status and headers, its body unread. */
export type ObjectGetter = (key: string, headers: Readonly<Record<string, string | undefined>>, signal?: AbortSignal) => Promise<HttpResponse>;

/** Sends a body request and gives the ETag the service answered with. */
export interface BodySender {
  (request: BodyRequest, signal?: AbortSignal): Promise<string | undefined>;
  /** True once the service refused an unsigned payload: a streamed body, which cannot be hashed before it is sent, would be refused too. */
  readonly signsPayloads: () => boolean;
}

/**
 * Sends PutObject and UploadPart, and GetObject, without the S3Client's middleware stack, which costs about as much CPU again as the
 * request itself (docs/s3-requests.md). What correctness needs is the client's own, not a copy: its endpoint (resolved
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
export function s3DirectRequests(client: S3Client, bucket: string, throttling: ThrottlePolicy): { readonly sendBody: BodySender; readonly get: ObjectGetter } {
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

  /** One request to the bucket, signed, sent, retried and ridden out through throttling as the client would; a non-2xx answer is thrown as the SDK's exception. */
  const exchange = async <Answer>(spec: Exchange<Answer>, signal: AbortSignal | undefined): Promise<Answer> => {
    target ??= resolveTarget().catch((error: unknown) => {
      target = undefined;
      throw error;
    });
    const { url, sign } = await target;
    const unsent: HttpRequest = new HttpRequest({
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port === '' ? {} : { port: Number(url.port) }),
      method: spec.method,
      // The SDK's path for S3's greedy `{Key+}`: each segment escaped, the slashes kept.
      path: `${url.pathname.replace(/\/$/, '')}/${spec.key.split('/').map(extendedEncodeURIComponent).join('/')}`,
      query: { ...spec.query, 'x-id': spec.operation },
      headers: { host: url.host, ...spec.headers },
      ...(spec.body === undefined ? {} : { body: spec.body }),
    });
    const attempt = async (args: { request: unknown }): Promise<{ response: HttpResponse; output: { $metadata: object; answer: Answer } }> => {
      const request = args.request as HttpRequest;
      const { response } = (await config.requestHandler.handle(await sign(spec.prepare?.(request) ?? request), { abortSignal: signal })) as { response: HttpResponse };
      if (response.statusCode < 200 || response.statusCode > 299) throw errorAnswer(response, await answerText(response.body, `the ${spec.operation} answer`));
      return { response, output: { $metadata: {}, answer: await spec.answer(response) } };
    };
    const send = (): Promise<Answer> =>
      retrying(attempt, { __smithy_context: signal === undefined ? {} : { abortSignal: signal } })({ input: {}, request: unsent }).then((result) => result.output.answer);
    return rideOutThrottling(send, throttling, signal);
  };

  let signPayloads = false;
  /** `sent.unsigned` says how the last attempt went out, decided just before it is signed: a body that waited while another was refused goes out signed. */
  const sendOnce = async (request: BodyRequest, sent: { unsigned: boolean }, signal: AbortSignal | undefined): Promise<string | undefined> => {
    const { body } = request;
    return exchange({
      method: 'PUT',
      operation: request.operation,
      key: request.key,
      ...(request.query === undefined ? {} : { query: request.query }),
      headers: { 'content-type': 'application/octet-stream', ...definedFields(request.headers), 'content-length': String(body instanceof Uint8Array ? body.byteLength : body.size) },
      // A stream is opened for each attempt, just before it is sent.
      ...(body instanceof Uint8Array ? { body } : {}),
      prepare: (request) => {
        // A stream goes on a copy: the retry middleware would not retry a request it sees carrying one.
        const toSign = body instanceof Uint8Array ? request : Object.assign(HttpRequest.clone(request), { body: body.open() });
        sent.unsigned = !signPayloads;
        // Signed: the signer hashes the body and sets the header itself.
        if (sent.unsigned) toSign.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        else delete toSign.headers['x-amz-content-sha256'];
        return toSign;
      },
      // The answer's body is read to its end: the socket goes back to the pool only then.
      answer: async (response) => {
        await answerText(response.body, `the ${request.operation} answer`);
        return response.headers['etag'];
      },
    }, signal);
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
  const get = (key: string, headers: Readonly<Record<string, string | undefined>>, signal?: AbortSignal): Promise<HttpResponse> =>
    // The answer's body is the caller's to read.
    exchange({ method: 'GET', operation: 'GetObject', key, headers: definedFields(headers), answer: async (response) => response }, signal);
  return { sendBody: Object.assign(send, { signsPayloads: () => signPayloads }), get };
}

/** One request of `s3DirectRequests`. */
interface Exchange<Answer> {
  readonly method: 'GET' | 'PUT';
  /** The S3 operation (the `x-id` query the SDK adds, and how messages name the answer). */
  readonly operation: string;
  readonly key: string;
  readonly query?: Readonly<Record<string, string>>;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Uint8Array;
  /** The request of an attempt, as it is to be signed. */
  readonly prepare?: (request: HttpRequest) => HttpRequest;
  /** What a 2xx answer gives. */
  readonly answer: (response: HttpResponse) => Promise<Answer>;
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
