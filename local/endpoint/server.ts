/**
 * The HTTP edge of the local endpoint: one port for both services, Node's built-in HTTP
 * server, routing by wire protocol (SQS: `X-Amz-Target: AmazonSQS.*` with an AWS JSON 1.0
 * body; SNS: a form-encoded query-protocol body; Lambda's event source mappings: REST-JSON
 * under `/2015-03-31/event-source-mappings`; Secrets Manager: `X-Amz-Target: secretsmanager.*` with
 * an AWS JSON 1.1 body), request ids, body limits, clean
 * shutdown. Request signatures are not checked: any credentials are accepted.
 *
 * Two local-only routes help tooling: `GET /_pgfanout/health` and `GET /_pgfanout/stats`
 * (queue depths with the age of the oldest message, which SQS exposes only as the
 * CloudWatch metric ApproximateAgeOfOldestMessage, and per-subscription delivery counts).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Clock, systemClock } from './clock.ts';
import { ESM_PATH, EventSourceMappings } from './lambda/event-source-mappings.ts';
import { FUNCTIONS_PATH, LambdaFunctions } from './lambda/functions.ts';
import { AwsApiError, EndpointOptionError, type PersistenceError, secretsManagerError, snsError, sqsError } from './errors.ts';
import { loadState, type PersistedState, STATE_FORMAT_VERSION, StateFile } from './persistence.ts';
import { handleSnsRequest, queryErrorReply } from './sns/query-protocol.ts';
import { SnsService } from './sns/service.ts';
import { handleSqsRequest, SQS_CONTENT_TYPE, sqsErrorReply, type WireReply } from './sqs/json-protocol.ts';
import { SqsService } from './sqs/service.ts';
import { handleSecretsManagerRequest, SECRETS_MANAGER_TARGET_PREFIX, secretsManagerErrorReply } from './secretsmanager/json-protocol.ts';
import { SecretsManagerService } from './secretsmanager/service.ts';
import { parseQueryForm } from './wire/query.ts';

/** Options of {@link startEndpoint}. */
export interface EndpointOptions {
  /** TCP port; 0 picks a free one. @default 4566 (LocalStack's) */
  readonly port?: number;
  /** Interface to listen on. @default '127.0.0.1' */
  readonly host?: string;
  /** Keep queues, topics and messages in this JSON file across restarts. @default none (in memory) */
  readonly persistFile?: string;
  /** Region in ARNs. @default 'us-east-1' */
  readonly region?: string;
  /** Account id in ARNs and queue URLs (12 digits). @default '000000000000' (LocalStack's) */
  readonly accountId?: string;
  /** Time source (tests move time forward with it). @default the system clock */
  readonly clock?: Clock;
  /** Receives problems that are not the client's fault (a failed save, an endpoint bug). @default write to stderr */
  readonly onError?: (error: Error) => void;
  /** Receives SNS deliveries that failed (queue gone, message not acceptable to SQS). @default ignore */
  readonly onDeliveryFailure?: (failure: { subscriptionArn: string; endpoint: string; reason: string }) => void;
}

/** Depths and delivery counters, for tooling and tests. */
export interface EndpointStats {
  readonly queues: ReturnType<SqsService['stats']>;
  readonly subscriptions: ReturnType<SnsService['stats']>;
}

/** A running endpoint. */
export interface Endpoint {
  /** Base URL to give the SDK as `endpoint` (or `AWS_ENDPOINT_URL`). */
  readonly url: string;
  readonly port: number;
  readonly region: string;
  readonly accountId: string;
  /** Current queue depths and delivery counters. */
  stats(): EndpointStats;
  /** Ends waiting receives, closes every connection, saves the state (if persisting). Idempotent. */
  close(): Promise<void>;
}

/** Largest request body accepted (an SQS batch of ten 1 MiB messages, JSON-escaped, fits). */
const MAX_BODY_BYTES = 32 * 1024 * 1024;

function checkOptions(options: EndpointOptions): void {
  const problems: string[] = [];
  if (options.port !== undefined && (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535)) {
    problems.push(`port must be an integer from 0 to 65535, got ${JSON.stringify(options.port)}`);
  }
  if (options.region !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(options.region)) {
    problems.push(`region must look like "us-east-1", got ${JSON.stringify(options.region)}`);
  }
  if (options.accountId !== undefined && !/^\d{12}$/.test(options.accountId)) {
    problems.push(`accountId must be 12 digits, got ${JSON.stringify(options.accountId)}`);
  }
  if (problems.length > 0) throw new EndpointOptionError(`invalid endpoint options: ${problems.join('; ')}`);
}

function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        resolve(undefined);
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, reply: WireReply, requestId: string): void {
  if (res.destroyed || res.writableEnded) return;
  const body = Buffer.from(reply.body, 'utf8');
  res.writeHead(reply.status, { ...reply.headers, 'x-amzn-requestid': requestId, 'content-length': String(body.length) });
  res.end(body);
}

/**
 * Starts the endpoint. Resolves when it listens; rejects when the port is taken or the
 * persistence file cannot be read.
 */
export async function startEndpoint(options: EndpointOptions = {}): Promise<Endpoint> {
  checkOptions(options);
  const host = options.host ?? '127.0.0.1';
  const region = options.region ?? 'us-east-1';
  const accountId = options.accountId ?? '000000000000';
  const clock = options.clock ?? systemClock;
  const onError = options.onError ?? ((error: Error) => console.error(`pgfanout local endpoint: ${error.stack ?? error.message}`));
  let baseUrl = '';
  /**
   * Queue URLs use the origin the client reached the endpoint at (its Host header), as
   * LocalStack's path strategy does: the SQS SDK sends requests to a queue URL's origin
   * when its endpoint comes from AWS_ENDPOINT_URL, so the URL must be reachable from
   * wherever the client runs (another container, another host name).
   */
  const requestOrigin = new AsyncLocalStorage<string>();
  const origin = (): string => requestOrigin.getStore() ?? baseUrl;
  let store: StateFile | undefined;
  const onChange = (): void => store?.changed();

  const sqs = new SqsService({ clock, region, accountId, baseUrl: origin, onChange });
  const mappings = new EventSourceMappings({ clock, region, accountId });
  const functions = new LambdaFunctions({ region, accountId });
  const secrets = new SecretsManagerService({ clock, region, accountId, onChange });
  const sns = new SnsService({
    clock,
    region,
    accountId,
    baseUrl: origin,
    sqs,
    onChange,
    ...(options.onDeliveryFailure ? { onDeliveryFailure: options.onDeliveryFailure } : {}),
  });

  if (options.persistFile) {
    const saved = await loadState(options.persistFile);
    if (saved) {
      sqs.restore(saved.sqs);
      sns.restore(saved.sns);
      secrets.restore(saved.secretsmanager);
    }
    const snapshot = (): PersistedState => ({
      version: STATE_FORMAT_VERSION,
      savedAt: new Date(clock.now()).toISOString(),
      sqs: sqs.snapshot(),
      sns: sns.snapshot(),
      secretsmanager: secrets.snapshot(),
    });
    store = new StateFile(options.persistFile, snapshot, (error: PersistenceError) => onError(error));
  }

  let closing = false;

  async function route(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<WireReply> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/_pgfanout/health') {
      return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ status: closing ? 'closing' : 'running' }) };
    }
    if (req.method === 'GET' && url.pathname === '/_pgfanout/stats') {
      return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ queues: sqs.stats(), subscriptions: sns.stats() }) };
    }
    const target = req.headers['x-amz-target'];
    const secretsTarget = typeof target === 'string' && target.startsWith(SECRETS_MANAGER_TARGET_PREFIX);
    const body = await readBody(req);
    if (body === undefined) {
      const error = `The request body is larger than ${MAX_BODY_BYTES} bytes.`;
      if (secretsTarget) return secretsManagerErrorReply(secretsManagerError('InvalidRequestException', error));
      return typeof target === 'string' ? sqsErrorReply(sqsError('InvalidParameterValue', error)) : queryErrorReply(snsError('InvalidParameter', error), requestId);
    }
    if (closing) {
      const error = 'The local endpoint is shutting down.';
      if (secretsTarget) return secretsManagerErrorReply(secretsManagerError('InternalServiceError', error));
      return typeof target === 'string'
        ? sqsErrorReply(sqsError('InternalFailure', error))
        : queryErrorReply(snsError('InternalError', error), requestId);
    }
    if (secretsTarget) return handleSecretsManagerRequest(secrets, target, body);
    if (url.pathname === ESM_PATH || url.pathname.startsWith(`${ESM_PATH}/`)) {
      return mappings.handle(req.method ?? 'GET', url, body);
    }
    if (url.pathname === FUNCTIONS_PATH || url.pathname.startsWith(`${FUNCTIONS_PATH}/`)) {
      return functions.handle(req.method ?? 'GET', url, body);
    }
    if (typeof target === 'string') {
      const abort = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) abort.abort();
      });
      return handleSqsRequest(sqs, target, body, abort.signal);
    }
    const contentType = String(req.headers['content-type'] ?? '');
    if (req.method === 'POST' && contentType.startsWith('application/x-www-form-urlencoded')) {
      return handleSnsRequest(sns, parseQueryForm(body), requestId);
    }
    if (req.method === 'GET' && url.searchParams.has('Action')) {
      return handleSnsRequest(sns, parseQueryForm(url.search.slice(1)), requestId);
    }
    return queryErrorReply(
      snsError(
        'InvalidAction',
        `Not an SNS or SQS request: ${req.method} ${url.pathname} with Content-Type ${JSON.stringify(contentType)}. SQS requests carry X-Amz-Target: AmazonSQS.<Operation> and ${SQS_CONTENT_TYPE}; SNS requests are form-encoded with an Action.`,
      ),
      requestId,
    );
  }

  const server: Server = createServer((req, res) => {
    const requestId = randomUUID();
    const host = req.headers.host;
    const from = host && /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host) ? `http://${host}` : baseUrl;
    requestOrigin
      .run(from, () => route(req, res, requestId))
      .then((reply) => send(res, reply, requestId))
      .catch((error: unknown) => {
        // A client that went away mid-request is not an endpoint problem.
        if (req.destroyed || res.destroyed) return;
        const err = error instanceof Error ? error : new Error(String(error));
        onError(err);
        const message = `The local endpoint failed while handling the request: ${err.message}`;
        const target = req.headers['x-amz-target'];
        const reply =
          typeof target === 'string' && target.startsWith(SECRETS_MANAGER_TARGET_PREFIX)
            ? secretsManagerErrorReply(secretsManagerError('InternalServiceError', message, { cause: err }))
            : typeof target === 'string'
            ? sqsErrorReply(sqsError('InternalFailure', message, { cause: err }))
            : queryErrorReply(error instanceof AwsApiError ? error : snsError('InternalError', message, { cause: err }), requestId);
        send(res, reply, requestId);
      });
  });

  await new Promise<void>((resolve, reject) => {
    const onListenError = (err: NodeJS.ErrnoException): void => {
      reject(
        new EndpointOptionError(
          err.code === 'EADDRINUSE'
            ? `port ${options.port ?? 4566} on ${host} is already in use; pass another port (0 picks a free one)`
            : `cannot listen on ${host}:${options.port ?? 4566}: ${err.message}`,
        ),
      );
    };
    server.once('error', onListenError);
    server.listen(options.port ?? 4566, host, () => {
      server.off('error', onListenError);
      server.on('error', (err) => onError(err));
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  baseUrl = `http://${urlHost}:${port}`;

  let closed: Promise<void> | undefined;
  return {
    url: baseUrl,
    port,
    region,
    accountId,
    stats: () => ({ queues: sqs.stats(), subscriptions: sns.stats() }),
    close() {
      closed ??= (async () => {
        closing = true;
        sqs.close();
        // Let the replies of the waits that just ended reach their sockets.
        await new Promise<void>((resolve) => setImmediate(resolve));
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
          setImmediate(() => server.closeAllConnections());
        });
        await store?.close();
      })();
      return closed;
    },
  };
}
