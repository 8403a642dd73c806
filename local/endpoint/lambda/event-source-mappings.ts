/**
 * Lambda's event source mapping resource, the part pgfanout uses to pause and resume a
 * replica's applier: CreateEventSourceMapping, GetEventSourceMapping, ListEventSourceMappings,
 * UpdateEventSourceMapping (`Enabled`) and DeleteEventSourceMapping, over the REST-JSON routes
 * the pinned SDK sends (`/2015-03-31/event-source-mappings[/{UUID}]`). The mappings are state
 * only: the local event-source runner reads its mapping before every poll and stops polling
 * while it is disabled, as Lambda does ("If you disable the event source mapping, Lambda stops
 * polling … if you enable it again, it resumes", API_UpdateEventSourceMapping,
 * https://docs.aws.amazon.com/lambda/latest/api/API_UpdateEventSourceMapping.html).
 *
 * An update replies with the transitional state (`Enabling`, `Disabling`) and the mapping
 * settles at once; Lambda documents the states Creating, Enabling, Enabled, Disabling,
 * Disabled, Updating and Deleting and takes a moment to settle
 * (https://docs.aws.amazon.com/lambda/latest/api/API_EventSourceMappingConfiguration.html).
 * Errors follow Lambda's REST-JSON shape: the HTTP status, `x-amzn-ErrorType` and a JSON body
 * with `Type` and `Message`. Mappings are not persisted: `pgfanout local` creates them at start.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.ts';

/** Lambda's API version prefix of the event source mapping routes. */
export const ESM_PATH = '/2015-03-31/event-source-mappings';

export interface MappingReply {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

interface Mapping {
  readonly UUID: string;
  readonly EventSourceArn: string;
  readonly FunctionArn: string;
  BatchSize: number;
  State: 'Enabled' | 'Disabled';
  StateTransitionReason: string;
  LastModified: number;
  readonly FunctionResponseTypes: readonly string[];
}

class LambdaError extends Error {
  readonly status: number;
  readonly type: string;

  constructor(status: number, type: string, message: string) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

function json(status: number, body: unknown): MappingReply {
  return { status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

function errorReply(error: LambdaError): MappingReply {
  return { status: error.status, headers: { 'content-type': 'application/json', 'x-amzn-errortype': error.type }, body: JSON.stringify({ Type: 'User', Message: error.message }) };
}

function parseBody(body: string): Record<string, unknown> {
  if (body.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new LambdaError(400, 'InvalidParameterValueException', 'The request body is not valid JSON.');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new LambdaError(400, 'InvalidParameterValueException', 'The request body must be a JSON object.');
  return parsed as Record<string, unknown>;
}

export class EventSourceMappings {
  readonly #mappings = new Map<string, Mapping>();
  readonly #clock: Clock;
  readonly #region: string;
  readonly #accountId: string;

  constructor(options: { readonly clock: Clock; readonly region: string; readonly accountId: string }) {
    this.#clock = options.clock;
    this.#region = options.region;
    this.#accountId = options.accountId;
  }

  /** Whether the mapping with `uuid` exists and is enabled (read by the local runner). */
  isEnabled(uuid: string): boolean | undefined {
    const m = this.#mappings.get(uuid);
    return m === undefined ? undefined : m.State === 'Enabled';
  }

  /** Handles one request under {@link ESM_PATH}. */
  handle(method: string, url: URL, body: string): MappingReply {
    try {
      const rest = url.pathname.slice(ESM_PATH.length).replace(/^\/+|\/+$/g, '');
      if (rest === '') {
        if (method === 'POST') return this.#create(parseBody(body));
        if (method === 'GET') return this.#list(url.searchParams);
      } else if (!rest.includes('/')) {
        const uuid = decodeURIComponent(rest);
        if (method === 'GET') return json(200, this.#view(this.#get(uuid)));
        if (method === 'PUT') return this.#update(uuid, parseBody(body));
        if (method === 'DELETE') {
          const m = this.#get(uuid);
          this.#mappings.delete(uuid);
          return json(202, { ...this.#view(m), State: 'Deleting' });
        }
      }
      throw new LambdaError(404, 'ResourceNotFoundException', `No route for ${method} ${url.pathname}; the local endpoint implements Lambda's event source mapping operations only.`);
    } catch (error) {
      if (error instanceof LambdaError) return errorReply(error);
      throw error;
    }
  }

  #get(uuid: string): Mapping {
    const m = this.#mappings.get(uuid);
    if (m === undefined) throw new LambdaError(404, 'ResourceNotFoundException', `The resource you requested does not exist. (event source mapping ${uuid})`);
    return m;
  }

  #view(m: Mapping): Record<string, unknown> {
    return { ...m, FunctionResponseTypes: [...m.FunctionResponseTypes] };
  }

  #functionArn(name: string): string {
    return name.startsWith('arn:') ? name : `arn:aws:lambda:${this.#region}:${this.#accountId}:function:${name}`;
  }

  #create(input: Record<string, unknown>): MappingReply {
    const { FunctionName, EventSourceArn, Enabled, BatchSize, FunctionResponseTypes } = input;
    if (typeof FunctionName !== 'string' || FunctionName === '') throw new LambdaError(400, 'InvalidParameterValueException', 'FunctionName is required.');
    if (typeof EventSourceArn !== 'string' || !EventSourceArn.startsWith('arn:')) throw new LambdaError(400, 'InvalidParameterValueException', 'EventSourceArn must be an ARN.');
    const functionArn = this.#functionArn(FunctionName);
    for (const m of this.#mappings.values()) {
      if (m.EventSourceArn === EventSourceArn && m.FunctionArn === functionArn) {
        throw new LambdaError(409, 'ResourceConflictException', `An event source mapping with SQS arn (" ${EventSourceArn} ") and function (" ${FunctionName} ") already exists. Please update or delete the existing mapping with UUID ${m.UUID}`);
      }
    }
    const batchSize = BatchSize === undefined ? 10 : BatchSize;
    if (typeof batchSize !== 'number' || !Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10000) throw new LambdaError(400, 'InvalidParameterValueException', `BatchSize must be a whole number from 1 to 10000, got ${JSON.stringify(BatchSize)}.`);
    const mapping: Mapping = {
      UUID: randomUUID(),
      EventSourceArn,
      FunctionArn: functionArn,
      BatchSize: batchSize,
      State: Enabled === false ? 'Disabled' : 'Enabled',
      StateTransitionReason: 'USER_INITIATED',
      LastModified: this.#clock.now() / 1000,
      FunctionResponseTypes: Array.isArray(FunctionResponseTypes) ? FunctionResponseTypes.map(String) : [],
    };
    this.#mappings.set(mapping.UUID, mapping);
    return json(202, { ...this.#view(mapping), State: 'Creating' });
  }

  #list(query: URLSearchParams): MappingReply {
    const source = query.get('EventSourceArn');
    const fn = query.get('FunctionName');
    const functionArn = fn === null ? null : this.#functionArn(fn);
    const found = [...this.#mappings.values()].filter((m) => (source === null || m.EventSourceArn === source) && (functionArn === null || m.FunctionArn === functionArn));
    return json(200, { EventSourceMappings: found.map((m) => this.#view(m)) });
  }

  #update(uuid: string, input: Record<string, unknown>): MappingReply {
    const m = this.#get(uuid);
    let transition: string | undefined;
    if (input.Enabled !== undefined) {
      if (typeof input.Enabled !== 'boolean') throw new LambdaError(400, 'InvalidParameterValueException', `Enabled must be true or false, got ${JSON.stringify(input.Enabled)}.`);
      m.State = input.Enabled ? 'Enabled' : 'Disabled';
      transition = input.Enabled ? 'Enabling' : 'Disabling';
    }
    if (input.BatchSize !== undefined) {
      if (typeof input.BatchSize !== 'number' || !Number.isInteger(input.BatchSize) || input.BatchSize < 1 || input.BatchSize > 10000) throw new LambdaError(400, 'InvalidParameterValueException', `BatchSize must be a whole number from 1 to 10000, got ${JSON.stringify(input.BatchSize)}.`);
      m.BatchSize = input.BatchSize;
      transition ??= 'Updating';
    }
    m.StateTransitionReason = 'USER_INITIATED';
    m.LastModified = this.#clock.now() / 1000;
    return json(202, { ...this.#view(m), State: transition ?? m.State });
  }
}
