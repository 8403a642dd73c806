/**
 * The SQS operations of the local endpoint, over {@link QueueState}: request validation
 * with AWS's error codes, queue registry, long polling, dead-letter redrive and message
 * move tasks. Inputs arrive as {@link InputReader}s (already decoded from the wire);
 * outputs are the AWS JSON 1.0 reply shapes of the SQS model.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { attributeNameProblem, firstDisallowedCharacter, isNumberText, messageBytes } from '../attributes.ts';
import type { Clock } from '../clock.ts';
import { type AttributeValue, md5OfAttributes, md5OfText, sha256OfText } from '../digest.ts';
import { type AwsApiError, sqsError } from '../errors.ts';
import { type InputErrors, InputReader, show } from '../wire/input.ts';
import {
  DEDUPLICATION_INTERVAL_MS,
  QueueState,
  type QueueStateSnapshot,
  type StoredMessage,
} from './queue.ts';
import {
  defaultSettings,
  parseQueueAttributes,
  parseRedrivePolicy,
  READABLE_ATTRIBUTES,
  type RedrivePolicy,
  type SettableAttribute,
} from './queue-settings.ts';

/** Most messages one receive returns, and most entries one batch request may hold. */
const MAX_BATCH_ENTRIES = 10;
/** Largest total payload of SendMessageBatch: 1 MiB. */
const MAX_BATCH_BYTES = 1_048_576;
/** Most messages a queue may have in flight (SQS `ChangeMessageVisibility`). */
const MAX_IN_FLIGHT = 120_000;
/** Seconds to wait after DeleteQueue before a queue of the same name may be created. */
const QUEUE_NAME_REUSE_MS = 60_000;
/** Seconds to wait between two PurgeQueue calls on one queue. */
const PURGE_INTERVAL_MS = 60_000;
/** How long a ReceiveRequestAttemptId can be retried (SQS `ReceiveMessage`). */
const RECEIVE_ATTEMPT_MS = 5 * 60 * 1000;
/** Most messages a move task without a rate moves per step. */
const MOVE_STEP = 100;

/** SQS errors for missing or mistyped parameters. */
export const SQS_INPUT_ERRORS: InputErrors = {
  missing: (path) => sqsError('MissingParameter', `The request must contain the parameter ${path}.`),
  invalid: (path, value, expected) =>
    sqsError('InvalidParameterValue', `Value ${show(value)} for parameter ${path} is invalid. Reason: it must be ${expected}.`),
};

/** Where the service lives: region, account and the URL clients reach it at. */
export interface SqsServiceOptions {
  readonly clock: Clock;
  readonly region: string;
  readonly accountId: string;
  /** Base URL of the endpoint (`http://host:port`), used to build queue URLs. */
  readonly baseUrl: () => string;
  /** Called after every change of state (persistence hooks here). */
  readonly onChange?: () => void;
}

/** A message attribute value on the AWS JSON 1.0 wire (binary as base64). */
export interface WireAttributeValue {
  readonly DataType: string;
  readonly StringValue?: string;
  readonly BinaryValue?: string;
  readonly StringListValues?: readonly string[];
  readonly BinaryListValues?: readonly string[];
}

/** A message as delivered by SNS to a subscribed queue. */
export interface SnsDelivery {
  readonly body: string;
  readonly attributes: ReadonlyMap<string, AttributeValue>;
  readonly groupId?: string;
  readonly deduplicationId?: string;
}

/** Result of one SNS delivery attempt. */
export type DeliveryResult = { readonly ok: true; readonly duplicate: boolean } | { readonly ok: false; readonly reason: string };

/** One failed entry of a batch request (SQS `BatchResultErrorEntry`). */
export interface BatchFailure {
  readonly Id: string;
  readonly SenderFault: boolean;
  readonly Code: string;
  readonly Message: string;
}

interface Waiter {
  readonly attempt: () => StoredMessage[] | undefined;
  readonly finish: (messages: StoredMessage[] | AwsApiError) => void;
}

interface ReceiveAttempt {
  readonly expiresAt: number;
  readonly messages: readonly { readonly message: StoredMessage; readonly nonce: string }[];
}

interface Queue {
  readonly name: string;
  readonly arn: string;
  readonly fifo: boolean;
  readonly createdAt: number;
  lastModified: number;
  settings: Map<SettableAttribute, string>;
  redrive: RedrivePolicy | undefined;
  readonly tags: Map<string, string>;
  state: QueueState;
  lastPurgeAt: number | undefined;
  readonly waiters: Set<Waiter>;
  /** Cancels the clock timer that wakes the waiters when a hidden message becomes visible. */
  wakeTimer: (() => void) | undefined;
  wakeAt: number;
  notifyScheduled: boolean;
  readonly receiveAttempts: Map<string, ReceiveAttempt>;
}

/** Status of a message move task (SQS `ListMessageMoveTasksResultEntry`). */
export type MoveTaskStatus = 'RUNNING' | 'COMPLETED' | 'CANCELLING' | 'CANCELLED' | 'FAILED';

interface MoveTask {
  readonly handle: string;
  readonly sourceArn: string;
  readonly destinationArn: string | undefined;
  readonly rate: number | undefined;
  readonly startedAt: number;
  readonly toMove: number;
  status: MoveTaskStatus;
  moved: number;
  failureReason: string | undefined;
  /** Cancels the scheduled next step. */
  timer: (() => void) | undefined;
}

/** Saved state of the SQS service. */
export interface SqsSnapshot {
  readonly queues: readonly {
    readonly name: string;
    readonly fifo: boolean;
    readonly createdAt: number;
    readonly lastModified: number;
    readonly settings: Readonly<Record<string, string>>;
    readonly tags: Readonly<Record<string, string>>;
    readonly lastPurgeAt?: number;
    readonly state: QueueStateSnapshot;
  }[];
  readonly deletedAt: Readonly<Record<string, number>>;
  readonly tasks: readonly {
    readonly handle: string;
    readonly sourceArn: string;
    readonly destinationArn?: string;
    readonly rate?: number;
    readonly startedAt: number;
    readonly toMove: number;
    readonly status: MoveTaskStatus;
    readonly moved: number;
    readonly failureReason?: string;
  }[];
}

const QUEUE_NAME = /^[A-Za-z0-9_-]{1,80}$/;
const BATCH_ENTRY_ID = /^[A-Za-z0-9_-]{1,80}$/;
/** MessageGroupId / MessageDeduplicationId: up to 128 alphanumeric or punctuation characters. */
const FIFO_TOKEN = /^[A-Za-z0-9!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]{1,128}$/;

/** The SQS half of the endpoint. */
export class SqsService {
  readonly #options: SqsServiceOptions;
  readonly #queues = new Map<string, Queue>();
  readonly #deletedAt = new Map<string, number>();
  readonly #tasks: MoveTask[] = [];
  #closed = false;
  /** Receipt nonces: unique per receive, a random prefix per service instance plus a counter. */
  readonly #noncePrefix = randomBytes(6).toString('base64url');
  #nonceCounter = 0;

  constructor(options: SqsServiceOptions) {
    this.#options = options;
  }

  #now(): number {
    return this.#options.clock.now();
  }

  #nonce(): string {
    this.#nonceCounter += 1;
    return `${this.#noncePrefix}${this.#nonceCounter.toString(36)}`;
  }

  #arn(name: string): string {
    return `arn:aws:sqs:${this.#options.region}:${this.#options.accountId}:${name}`;
  }

  /** The URL of queue `name`. */
  queueUrl(name: string): string {
    return `${this.#options.baseUrl()}/${this.#options.accountId}/${name}`;
  }

  #changed(queue?: Queue): void {
    this.#options.onChange?.();
    if (queue && queue.waiters.size > 0 && !queue.notifyScheduled) {
      queue.notifyScheduled = true;
      queueMicrotask(() => {
        queue.notifyScheduled = false;
        this.#notify(queue);
      });
    }
  }

  /** The queue a QueueUrl names: `<any origin>/<account>/<name>`. */
  #byUrl(url: string): Queue {
    let path: string;
    try {
      path = new URL(url).pathname;
    } catch {
      path = url;
    }
    const parts = path.split('/').filter((p) => p !== '');
    const name = parts.at(-1);
    const account = parts.at(-2);
    const queue = name !== undefined ? this.#queues.get(name) : undefined;
    if (!queue || parts.length !== 2 || account !== this.#options.accountId) {
      throw sqsError('QueueDoesNotExist', `The specified queue does not exist: ${url}`);
    }
    return queue;
  }

  #byArn(arn: string): Queue | undefined {
    const prefix = `arn:aws:sqs:${this.#options.region}:${this.#options.accountId}:`;
    return arn.startsWith(prefix) ? this.#queues.get(arn.slice(prefix.length)) : undefined;
  }

  /** Whether a queue with this ARN exists, and whether it is FIFO. */
  describeArn(arn: string): { readonly fifo: boolean } | undefined {
    const queue = this.#byArn(arn);
    return queue ? { fifo: queue.fifo } : undefined;
  }

  // ---- queues ------------------------------------------------------------------------

  /** CreateQueue. */
  createQueue(input: InputReader): { QueueUrl: string } {
    const name = input.string('QueueName');
    const attributes = input.stringMap('Attributes');
    const tags = input.stringMap('tags');
    const fifo = name.endsWith('.fifo');
    const base = fifo ? name.slice(0, -'.fifo'.length) : name;
    if (!QUEUE_NAME.test(base) || name.length > 80) {
      throw sqsError(
        'InvalidParameterValue',
        fifo
          ? `The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length: "${name}".`
          : `Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length: "${name}".`,
      );
    }
    if (fifo && attributes.FifoQueue?.toLowerCase() !== 'true') {
      throw sqsError(
        'InvalidParameterValue',
        `Queue name "${name}" ends with .fifo but the FifoQueue attribute is not true; a FIFO queue needs FifoQueue=true, a standard queue name must not end with .fifo.`,
      );
    }
    const parsed = parseQueueAttributes(attributes, fifo, true);
    const existing = this.#queues.get(name);
    if (existing) {
      for (const [attribute, value] of parsed) {
        if ((existing.settings.get(attribute) ?? '') !== value) {
          throw sqsError('QueueNameExists', `A queue already exists with the same name and a different value for attribute ${attribute}: ${name}.`);
        }
      }
      return { QueueUrl: this.queueUrl(name) };
    }
    const now = this.#now();
    const deletedAt = this.#deletedAt.get(name);
    if (deletedAt !== undefined && now - deletedAt < QUEUE_NAME_REUSE_MS) {
      throw sqsError('QueueDeletedRecently', `You must wait 60 seconds after deleting a queue before you can create another with the same name: ${name}.`);
    }
    const settings = defaultSettings(fifo);
    for (const [attribute, value] of parsed) settings.set(attribute, value);
    const redrive = this.#checkRedrive(name, fifo, settings);
    this.#checkThroughput(settings);
    this.#queues.set(name, {
      name,
      arn: this.#arn(name),
      fifo,
      createdAt: now,
      lastModified: now,
      settings,
      redrive,
      tags: new Map(Object.entries(tags)),
      state: new QueueState(fifo),
      lastPurgeAt: undefined,
      waiters: new Set(),
      wakeTimer: undefined,
      wakeAt: Number.POSITIVE_INFINITY,
      notifyScheduled: false,
      receiveAttempts: new Map(),
    });
    this.#changed();
    return { QueueUrl: this.queueUrl(name) };
  }

  #checkRedrive(name: string, fifo: boolean, settings: Map<SettableAttribute, string>): RedrivePolicy | undefined {
    const raw = settings.get('RedrivePolicy');
    const policy = raw ? parseRedrivePolicy(raw) : undefined;
    if (!policy) return undefined;
    const target = this.#byArn(policy.deadLetterTargetArn);
    const problem = !target
      ? 'the dead-letter target queue does not exist'
      : target.fifo !== fifo
        ? 'the dead-letter queue of a FIFO queue must be a FIFO queue, and of a standard queue a standard queue'
        : target.name === name
          ? 'a queue cannot be its own dead-letter queue'
          : this.#redriveDenied(target, this.#arn(name));
    if (problem) {
      throw sqsError('InvalidParameterValue', `Value ${raw} for parameter RedrivePolicy is invalid. Reason: ${problem}.`);
    }
    return policy;
  }

  #redriveDenied(target: Queue, sourceArn: string): string | undefined {
    const raw = target.settings.get('RedriveAllowPolicy');
    if (!raw) return undefined;
    const allow = JSON.parse(raw) as { redrivePermission: string; sourceQueueArns?: string[] };
    if (allow.redrivePermission === 'denyAll') return `queue ${target.name} does not allow any source queue (RedriveAllowPolicy denyAll)`;
    if (allow.redrivePermission === 'byQueue' && !allow.sourceQueueArns?.includes(sourceArn)) {
      return `queue ${target.name} allows only ${allow.sourceQueueArns?.join(', ')} as source queues (RedriveAllowPolicy byQueue)`;
    }
    return undefined;
  }

  #checkThroughput(settings: Map<SettableAttribute, string>): void {
    if (settings.get('FifoThroughputLimit') === 'perMessageGroupId' && settings.get('DeduplicationScope') !== 'messageGroup') {
      throw sqsError(
        'InvalidAttributeValue',
        'Invalid value for the parameter FifoThroughputLimit: perMessageGroupId is allowed only when DeduplicationScope is messageGroup.',
      );
    }
  }

  /** GetQueueUrl. */
  getQueueUrl(input: InputReader): { QueueUrl: string } {
    const name = input.string('QueueName');
    const owner = input.optionalString('QueueOwnerAWSAccountId');
    if (!this.#queues.has(name) || (owner !== undefined && owner !== this.#options.accountId)) {
      throw sqsError('QueueDoesNotExist', `The specified queue does not exist: ${name}.`);
    }
    return { QueueUrl: this.queueUrl(name) };
  }

  /** ListQueues (sorted by name; NextToken is the last name returned). */
  listQueues(input: InputReader): { QueueUrls?: string[]; NextToken?: string } {
    const prefix = input.optionalString('QueueNamePrefix') ?? '';
    const max = input.optionalInteger('MaxResults');
    const token = input.optionalString('NextToken');
    if (max !== undefined && (max < 1 || max > 1000)) {
      throw sqsError('InvalidParameterValue', `Value ${max} for parameter MaxResults is invalid. Reason: it must be from 1 to 1000.`);
    }
    const after = token !== undefined ? Buffer.from(token, 'base64url').toString('utf8') : undefined;
    const names = [...this.#queues.keys()].filter((n) => n.startsWith(prefix) && (after === undefined || n > after)).sort();
    const page = names.slice(0, max ?? 1000);
    const more = max !== undefined && names.length > page.length;
    return {
      ...(page.length > 0 ? { QueueUrls: page.map((n) => this.queueUrl(n)) } : {}),
      ...(more ? { NextToken: Buffer.from(page.at(-1) as string, 'utf8').toString('base64url') } : {}),
    };
  }

  /** GetQueueAttributes. */
  getQueueAttributes(input: InputReader): { Attributes?: Record<string, string> } {
    const queue = this.#byUrl(input.string('QueueUrl'));
    const names = input.stringList('AttributeNames');
    for (const name of names) {
      if (!READABLE_ATTRIBUTES.has(name)) throw sqsError('InvalidAttributeName', `Unknown Attribute ${name}.`);
    }
    const all = names.includes('All');
    const wanted = (name: string): boolean => all || names.includes(name);
    const out: Record<string, string> = {};
    for (const [name, value] of queue.settings) {
      if (value !== '' && wanted(name)) out[name] = value;
    }
    if (wanted('QueueArn')) out.QueueArn = queue.arn;
    if (wanted('CreatedTimestamp')) out.CreatedTimestamp = String(Math.floor(queue.createdAt / 1000));
    if (wanted('LastModifiedTimestamp')) out.LastModifiedTimestamp = String(Math.floor(queue.lastModified / 1000));
    if (wanted('ApproximateNumberOfMessages') || wanted('ApproximateNumberOfMessagesNotVisible') || wanted('ApproximateNumberOfMessagesDelayed')) {
      const counts = queue.state.counts(this.#now(), SqsService.#retentionMs(queue));
      if (wanted('ApproximateNumberOfMessages')) out.ApproximateNumberOfMessages = String(counts.visible);
      if (wanted('ApproximateNumberOfMessagesNotVisible')) out.ApproximateNumberOfMessagesNotVisible = String(counts.inFlight);
      if (wanted('ApproximateNumberOfMessagesDelayed')) out.ApproximateNumberOfMessagesDelayed = String(counts.delayed);
    }
    return Object.keys(out).length > 0 ? { Attributes: out } : {};
  }

  /** SetQueueAttributes. */
  setQueueAttributes(input: InputReader): Record<string, never> {
    const queue = this.#byUrl(input.string('QueueUrl'));
    const parsed = parseQueueAttributes(input.stringMap('Attributes'), queue.fifo, false);
    const settings = new Map(queue.settings);
    for (const [attribute, value] of parsed) settings.set(attribute, value);
    const redrive = this.#checkRedrive(queue.name, queue.fifo, settings);
    this.#checkThroughput(settings);
    queue.settings = settings;
    queue.redrive = redrive;
    queue.lastModified = this.#now();
    this.#changed(queue);
    return {};
  }

  /** DeleteQueue: the queue and its messages are gone; waiting receives fail. */
  deleteQueue(input: InputReader): Record<string, never> {
    const queue = this.#byUrl(input.string('QueueUrl'));
    this.#queues.delete(queue.name);
    this.#deletedAt.set(queue.name, this.#now());
    queue.wakeTimer?.();
    for (const waiter of [...queue.waiters]) waiter.finish(sqsError('QueueDoesNotExist', `The specified queue does not exist: ${queue.name}.`));
    for (const task of this.#tasks) {
      if (task.status === 'RUNNING' && task.sourceArn === queue.arn) this.#finishTask(task, 'FAILED', `source queue ${queue.name} was deleted`);
    }
    this.#changed();
    return {};
  }

  /** PurgeQueue: deletes every message; a second purge within 60 seconds fails. */
  purgeQueue(input: InputReader): Record<string, never> {
    const queue = this.#byUrl(input.string('QueueUrl'));
    const now = this.#now();
    if (queue.lastPurgeAt !== undefined && now - queue.lastPurgeAt < PURGE_INTERVAL_MS) {
      throw sqsError(
        'PurgeQueueInProgress',
        `Only one PurgeQueue operation on ${queue.name} is allowed every 60 seconds; the last one was ${Math.round((now - queue.lastPurgeAt) / 1000)} s ago.`,
      );
    }
    queue.lastPurgeAt = now;
    queue.state.purge();
    queue.receiveAttempts.clear();
    this.#changed(queue);
    return {};
  }

  /** TagQueue. */
  tagQueue(input: InputReader): Record<string, never> {
    const queue = this.#byUrl(input.string('QueueUrl'));
    for (const [k, v] of Object.entries(input.stringMap('Tags'))) queue.tags.set(k, v);
    this.#changed();
    return {};
  }

  /** UntagQueue. */
  untagQueue(input: InputReader): Record<string, never> {
    const queue = this.#byUrl(input.string('QueueUrl'));
    for (const k of input.stringList('TagKeys')) queue.tags.delete(k);
    this.#changed();
    return {};
  }

  /** ListQueueTags. */
  listQueueTags(input: InputReader): { Tags?: Record<string, string> } {
    const queue = this.#byUrl(input.string('QueueUrl'));
    return queue.tags.size > 0 ? { Tags: Object.fromEntries(queue.tags) } : {};
  }

  /** ListDeadLetterSourceQueues. */
  listDeadLetterSourceQueues(input: InputReader): { queueUrls: string[] } {
    const queue = this.#byUrl(input.string('QueueUrl'));
    const sources = [...this.#queues.values()].filter((q) => q.redrive?.deadLetterTargetArn === queue.arn).map((q) => this.queueUrl(q.name));
    return { queueUrls: sources.sort() };
  }

  // ---- sending -----------------------------------------------------------------------

  #attributes(entries: Map<string, InputReader>, system: boolean): Map<string, AttributeValue> {
    const kind = system ? 'Message system attribute' : 'Message (user) attribute';
    if (!system && entries.size > 10) {
      throw sqsError('InvalidParameterValue', `Number of message attributes [${entries.size}] exceeds the allowed maximum [10].`);
    }
    const out = new Map<string, AttributeValue>();
    for (const [name, value] of entries) {
      if (system) {
        if (name !== 'AWSTraceHeader') {
          throw sqsError('InvalidParameterValue', `${kind} name '${name}' is invalid. Reason: the only supported system attribute is AWSTraceHeader.`);
        }
      } else {
        const problem = attributeNameProblem(name);
        if (problem) throw sqsError('InvalidParameterValue', `${kind} name '${name}' is invalid. Reason: ${problem}.`);
      }
      const dataType = value.string('DataType');
      const stringValue = value.optionalString('StringValue');
      const binaryText = value.optionalString('BinaryValue');
      if (value.stringList('StringListValues').length > 0 || (value.optionalObjectList('BinaryListValues')?.length ?? 0) > 0) {
        throw sqsError('InvalidParameterValue', `${kind} '${name}': StringListValues and BinaryListValues are reserved by SQS for future use and not accepted.`);
      }
      const base = /^(String|Number|Binary)(\.[^\s]{1,250})?$/.exec(dataType)?.[1];
      if (!base || dataType.length > 256) {
        throw sqsError(
          'InvalidParameterValue',
          `${kind} '${name}' has an invalid data type '${dataType}'; allowed: String, Number or Binary, optionally followed by .label (at most 256 characters).`,
        );
      }
      if (system && dataType !== 'String') {
        throw sqsError('InvalidParameterValue', `${kind} '${name}' must have data type String, got '${dataType}'.`);
      }
      if (base === 'Binary') {
        if (binaryText === undefined || binaryText === '' || stringValue !== undefined) {
          throw sqsError('InvalidParameterValue', `${kind} '${name}' with type '${dataType}' must use field 'BinaryValue', and it must not be empty.`);
        }
        const bytes = Buffer.from(binaryText, 'base64');
        if (bytes.toString('base64').replace(/=+$/, '') !== binaryText.replace(/=+$/, '')) {
          throw sqsError('InvalidParameterValue', `${kind} '${name}': BinaryValue is not valid base64.`);
        }
        out.set(name, { dataType, binaryValue: bytes });
        continue;
      }
      if (stringValue === undefined || stringValue === '' || binaryText !== undefined) {
        throw sqsError('InvalidParameterValue', `${kind} '${name}' with type '${dataType}' must use field 'StringValue', and it must not be empty.`);
      }
      if (base === 'Number' && !isNumberText(stringValue.trim())) {
        throw sqsError('InvalidParameterValue', `${kind} '${name}' has type Number but value '${stringValue}' is not a number.`);
      }
      const bad = firstDisallowedCharacter(stringValue);
      if (bad) {
        throw sqsError(
          'InvalidMessageContents',
          `${kind} '${name}' contains the character ${bad}; allowed: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.`,
        );
      }
      out.set(name, { dataType, stringValue });
    }
    return out;
  }

  #prepare(queue: Queue, entry: InputReader, now: number): { message: StoredMessage; deduplicationKey: string | undefined } {
    const body = entry.optionalString('MessageBody');
    if (body === undefined || body === '') throw sqsError('MissingParameter', 'The request must contain the parameter MessageBody.');
    const bad = firstDisallowedCharacter(body);
    if (bad) {
      throw sqsError(
        'InvalidMessageContents',
        `Invalid binary character '${bad}' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF`,
      );
    }
    const attributes = this.#attributes(entry.objectMap('MessageAttributes'), false);
    const systemAttributes = this.#attributes(entry.objectMap('MessageSystemAttributes'), true);
    const size = messageBytes(body, attributes);
    const maxSize = Number(queue.settings.get('MaximumMessageSize'));
    if (size > maxSize) {
      throw sqsError(
        'InvalidParameterValue',
        `One or more parameters are invalid. Reason: Message must be shorter than ${maxSize} bytes (this one is ${size} bytes: body plus message attributes).`,
      );
    }
    const delay = entry.optionalInteger('DelaySeconds');
    if (delay !== undefined && (delay < 0 || delay > 900)) {
      throw sqsError('InvalidParameterValue', `Value ${delay} for parameter DelaySeconds is invalid. Reason: must be between 0 and 900, if provided.`);
    }
    const groupId = entry.optionalString('MessageGroupId');
    let deduplicationId = entry.optionalString('MessageDeduplicationId');
    if (groupId !== undefined && !FIFO_TOKEN.test(groupId)) {
      throw sqsError(
        'InvalidParameterValue',
        `Value ${groupId} for parameter MessageGroupId is invalid. Reason: up to 128 alphanumeric or punctuation characters are allowed.`,
      );
    }
    if (queue.fifo) {
      if (delay !== undefined) {
        throw sqsError(
          'InvalidParameterValue',
          `Value ${delay} for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type (a FIFO queue has only a queue-level delay).`,
        );
      }
      if (groupId === undefined) throw sqsError('MissingParameter', 'The request must contain the parameter MessageGroupId.');
      if (deduplicationId === undefined) {
        if (queue.settings.get('ContentBasedDeduplication') !== 'true') {
          throw sqsError(
            'InvalidParameterValue',
            'The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly',
          );
        }
        deduplicationId = sha256OfText(body);
      } else if (!FIFO_TOKEN.test(deduplicationId)) {
        throw sqsError(
          'InvalidParameterValue',
          `Value ${deduplicationId} for parameter MessageDeduplicationId is invalid. Reason: up to 128 alphanumeric or punctuation characters are allowed.`,
        );
      }
    } else if (deduplicationId !== undefined) {
      throw sqsError(
        'InvalidParameterValue',
        `Value ${deduplicationId} for parameter MessageDeduplicationId is invalid. Reason: The request include parameter that is not valid for this queue type.`,
      );
    }
    const availableAt = now + 1000 * (delay ?? Number(queue.settings.get('DelaySeconds')));
    const message: StoredMessage = {
      messageId: randomUUID(),
      body,
      attributes,
      systemAttributes,
      md5OfBody: md5OfText(body),
      md5OfAttributes: md5OfAttributes(attributes),
      md5OfSystemAttributes: md5OfAttributes(systemAttributes),
      sentTimestamp: now,
      senderId: this.#options.accountId,
      groupId,
      deduplicationId: queue.fifo ? deduplicationId : undefined,
      arrivedAt: now,
      retainedFrom: now,
      size,
      deadLetterSourceArn: undefined,
      order: 0,
      sequenceNumber: undefined,
      receiveCount: 0,
      firstReceiveTimestamp: undefined,
      lastReceiveTimestamp: undefined,
      availableAt,
      inFlight: false,
      visibleAt: 0,
      receiptNonce: undefined,
    };
    const deduplicationKey = queue.fifo
      ? queue.settings.get('DeduplicationScope') === 'messageGroup'
        ? `${groupId}\u0000${deduplicationId}`
        : (deduplicationId as string)
      : undefined;
    return { message, deduplicationKey };
  }

  /** Stores a prepared message unless it is a duplicate; returns the id and sequence number it got. */
  #enqueue(queue: Queue, message: StoredMessage, deduplicationKey: string | undefined, now: number): { messageId: string; sequenceNumber: bigint | undefined; duplicate: boolean } {
    if (deduplicationKey !== undefined) {
      const seen = queue.state.deduplicated(deduplicationKey, now);
      if (seen) return { messageId: seen.messageId, sequenceNumber: seen.sequenceNumber, duplicate: true };
    }
    if (queue.fifo) message.sequenceNumber = queue.state.nextSequenceNumber(now);
    if (deduplicationKey !== undefined) {
      queue.state.remember(deduplicationKey, {
        expiresAt: now + DEDUPLICATION_INTERVAL_MS,
        messageId: message.messageId,
        sequenceNumber: message.sequenceNumber,
      });
    }
    queue.state.add(message, now);
    return { messageId: message.messageId, sequenceNumber: message.sequenceNumber, duplicate: false };
  }

  #sendResult(message: StoredMessage, stored: { messageId: string; sequenceNumber: bigint | undefined }): Record<string, string> {
    return {
      MD5OfMessageBody: message.md5OfBody,
      ...(message.md5OfAttributes ? { MD5OfMessageAttributes: message.md5OfAttributes } : {}),
      ...(message.md5OfSystemAttributes ? { MD5OfMessageSystemAttributes: message.md5OfSystemAttributes } : {}),
      MessageId: stored.messageId,
      ...(stored.sequenceNumber !== undefined ? { SequenceNumber: stored.sequenceNumber.toString() } : {}),
    };
  }

  /** SendMessage. */
  sendMessage(input: InputReader): Record<string, string> {
    const queue = this.#byUrl(input.string('QueueUrl'));
    const now = this.#now();
    const { message, deduplicationKey } = this.#prepare(queue, input, now);
    const stored = this.#enqueue(queue, message, deduplicationKey, now);
    this.#changed(queue);
    return this.#sendResult(message, stored);
  }

  #checkBatch(entries: InputReader[] | undefined, action: string): InputReader[] {
    if (!entries || entries.length === 0) {
      throw sqsError('EmptyBatchRequest', `There should be at least one ${action}RequestEntry in the request.`);
    }
    if (entries.length > MAX_BATCH_ENTRIES) {
      throw sqsError('TooManyEntriesInBatchRequest', `Maximum number of entries per request are ${MAX_BATCH_ENTRIES}. You have sent ${entries.length}.`);
    }
    const seen = new Set<string>();
    for (const entry of entries) {
      const id = entry.string('Id');
      if (!BATCH_ENTRY_ID.test(id)) {
        throw sqsError(
          'InvalidBatchEntryId',
          `A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long: "${id}".`,
        );
      }
      if (seen.has(id)) throw sqsError('BatchEntryIdsNotDistinct', `Id ${id} repeated.`);
      seen.add(id);
    }
    return entries;
  }

  static #failure(id: string, error: unknown): BatchFailure {
    if (error instanceof Error && 'kind' in error) {
      const api = error as AwsApiError;
      return { Id: id, SenderFault: api.kind.fault === 'Sender', Code: api.kind.code, Message: api.message };
    }
    throw error;
  }

  /** SendMessageBatch: entries fail one by one; the total is limited to 1 MiB. */
  sendMessageBatch(input: InputReader): { Successful: Record<string, string>[]; Failed: BatchFailure[] } {
    const queue = this.#byUrl(input.string('QueueUrl'));
    const entries = this.#checkBatch(input.optionalObjectList('Entries'), 'SendMessageBatch');
    const now = this.#now();
    const prepared: ({ id: string; message: StoredMessage; key: string | undefined } | { id: string; error: unknown })[] = [];
    let total = 0;
    for (const entry of entries) {
      const id = entry.string('Id');
      try {
        const { message, deduplicationKey } = this.#prepare(queue, entry, now);
        total += message.size;
        prepared.push({ id, message, key: deduplicationKey });
      } catch (error) {
        total += Buffer.byteLength(entry.optionalString('MessageBody') ?? '', 'utf8');
        prepared.push({ id, error });
      }
    }
    if (total > MAX_BATCH_BYTES) {
      throw sqsError('BatchRequestTooLong', `Batch requests cannot be longer than ${MAX_BATCH_BYTES} bytes. You have sent ${total} bytes.`);
    }
    const Successful: Record<string, string>[] = [];
    const Failed: BatchFailure[] = [];
    for (const p of prepared) {
      if ('error' in p) {
        Failed.push(SqsService.#failure(p.id, p.error));
        continue;
      }
      const stored = this.#enqueue(queue, p.message, p.key, now);
      Successful.push({ Id: p.id, ...this.#sendResult(p.message, stored) });
    }
    this.#changed(queue);
    return { Successful, Failed };
  }

  /**
   * Delivers a message published to an SNS topic (the SQS side of an SNS subscription).
   * The same checks as SendMessage apply; a message SQS would reject is not delivered.
   */
  deliver(queueArn: string, delivery: SnsDelivery): DeliveryResult {
    const queue = this.#byArn(queueArn);
    if (!queue) return { ok: false, reason: `queue ${queueArn} does not exist` };
    const bad = firstDisallowedCharacter(delivery.body);
    if (bad) return { ok: false, reason: `the message contains the character ${bad}, which SQS does not accept` };
    if (delivery.attributes.size > 10) {
      return { ok: false, reason: `the message has ${delivery.attributes.size} message attributes; SQS accepts at most 10` };
    }
    const size = messageBytes(delivery.body, delivery.attributes);
    const maxSize = Number(queue.settings.get('MaximumMessageSize'));
    if (size > maxSize) return { ok: false, reason: `the message is ${size} bytes; queue ${queue.name} accepts at most ${maxSize}` };
    if (queue.fifo && (delivery.groupId === undefined || delivery.deduplicationId === undefined)) {
      return { ok: false, reason: `queue ${queue.name} is FIFO and the message has no message group or deduplication id` };
    }
    const now = this.#now();
    const message: StoredMessage = {
      messageId: randomUUID(),
      body: delivery.body,
      attributes: delivery.attributes,
      systemAttributes: new Map(),
      md5OfBody: md5OfText(delivery.body),
      md5OfAttributes: md5OfAttributes(delivery.attributes),
      md5OfSystemAttributes: undefined,
      sentTimestamp: now,
      senderId: this.#options.accountId,
      groupId: delivery.groupId,
      deduplicationId: queue.fifo ? delivery.deduplicationId : undefined,
      arrivedAt: now,
      retainedFrom: now,
      size,
      deadLetterSourceArn: undefined,
      order: 0,
      sequenceNumber: undefined,
      receiveCount: 0,
      firstReceiveTimestamp: undefined,
      lastReceiveTimestamp: undefined,
      availableAt: now + 1000 * Number(queue.settings.get('DelaySeconds')),
      inFlight: false,
      visibleAt: 0,
      receiptNonce: undefined,
    };
    const key = queue.fifo
      ? queue.settings.get('DeduplicationScope') === 'messageGroup'
        ? `${delivery.groupId}\u0000${delivery.deduplicationId}`
        : delivery.deduplicationId
      : undefined;
    const stored = this.#enqueue(queue, message, key, now);
    this.#changed(queue);
    return { ok: true, duplicate: stored.duplicate };
  }

  // ---- receiving ---------------------------------------------------------------------

  #receipt(queue: Queue, message: StoredMessage): string {
    return Buffer.from(`${queue.name}\u0000${message.messageId}\u0000${message.receiptNonce}`, 'utf8').toString('base64url');
  }

  /** Decodes a receipt handle of `queue`; a handle that is not one raises ReceiptHandleIsInvalid. */
  #decodeReceipt(queue: Queue, handle: string): { messageId: string; nonce: string } {
    const parts = /^[A-Za-z0-9_-]+$/.test(handle) ? Buffer.from(handle, 'base64url').toString('utf8').split('\u0000') : [];
    if (parts.length !== 3 || parts[0] !== queue.name) {
      throw sqsError('ReceiptHandleIsInvalid', `The input receipt handle "${handle}" is not a valid receipt handle.`);
    }
    return { messageId: parts[1] as string, nonce: parts[2] as string };
  }

  #wireMessage(queue: Queue, message: StoredMessage, systemNames: ReadonlySet<string>, attributeNames: readonly string[]): Record<string, unknown> {
    const system: Record<string, string> = {};
    const all = systemNames.has('All');
    const add = (name: string, value: string | undefined): void => {
      if (value !== undefined && (all || systemNames.has(name))) system[name] = value;
    };
    add('SenderId', message.senderId);
    add('SentTimestamp', String(message.sentTimestamp));
    add('ApproximateReceiveCount', String(message.receiveCount));
    add('ApproximateFirstReceiveTimestamp', message.firstReceiveTimestamp !== undefined ? String(message.firstReceiveTimestamp) : undefined);
    add('SequenceNumber', message.sequenceNumber?.toString());
    add('MessageDeduplicationId', message.deduplicationId);
    add('MessageGroupId', message.groupId);
    add('AWSTraceHeader', message.systemAttributes.get('AWSTraceHeader')?.stringValue);
    add('DeadLetterQueueSourceArn', message.deadLetterSourceArn);
    const selected = new Map<string, AttributeValue>();
    for (const [name, value] of message.attributes) {
      const match = attributeNames.some((pattern) =>
        pattern === 'All' || pattern === '.*' ? true : pattern.endsWith('.*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name,
      );
      if (match) selected.set(name, value);
    }
    const md5 = md5OfAttributes(selected);
    return {
      MessageId: message.messageId,
      ReceiptHandle: this.#receipt(queue, message),
      MD5OfBody: message.md5OfBody,
      Body: message.body,
      ...(Object.keys(system).length > 0 ? { Attributes: system } : {}),
      ...(md5 ? { MD5OfMessageAttributes: md5 } : {}),
      ...(selected.size > 0 ? { MessageAttributes: wireAttributes(selected) } : {}),
    };
  }

  /**
   * Moves a message whose receive count passed maxReceiveCount to the dead-letter queue. It
   * keeps its MessageId, SentTimestamp, group and receive count. In a FIFO dead-letter
   * queue "the original message's deduplication ID will be replaced with the original
   * message's ID", so that two messages that shared a deduplication id are both stored
   * ("Learn how to configure a dead-letter queue redrive in Amazon SQS",
   * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-configure-dead-letter-queue-redrive.html),
   * and "the enqueue timestamp resets", so its retention period starts again; in a standard
   * dead-letter queue "the expiration of a message is always based on its original enqueue
   * timestamp" ("Setting-up dead-letter queue retention in Amazon SQS",
   * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/setting-up-dead-letter-queue-retention.html).
   */
  #deadLetter(queue: Queue): ((message: StoredMessage) => boolean) | undefined {
    const policy = queue.redrive;
    if (!policy) return undefined;
    return (message) => {
      const target = this.#byArn(policy.deadLetterTargetArn);
      if (!target) return false;
      const now = this.#now();
      message.deadLetterSourceArn = queue.arn;
      message.arrivedAt = now;
      if (target.fifo) {
        message.deduplicationId = message.messageId;
        message.retainedFrom = now;
        const key = this.#deduplicationKey(target, message.groupId, message.deduplicationId);
        target.state.remember(key, { expiresAt: now + DEDUPLICATION_INTERVAL_MS, messageId: message.messageId, sequenceNumber: undefined });
      }
      this.#append(target, message);
      return true;
    };
  }

  #deduplicationKey(queue: Queue, groupId: string | undefined, deduplicationId: string): string {
    return queue.settings.get('DeduplicationScope') === 'messageGroup' ? `${groupId}\u0000${deduplicationId}` : deduplicationId;
  }

  /** Appends a message at the end of `queue` (dead-letter move, or a move task putting messages back). */
  #append(queue: Queue, message: StoredMessage): void {
    const now = this.#now();
    message.inFlight = false;
    message.receiptNonce = undefined;
    message.availableAt = now;
    message.sequenceNumber = queue.fifo ? queue.state.nextSequenceNumber(now) : undefined;
    queue.state.add(message, now);
    this.#changed(queue);
  }

  /**
   * ReceiveMessage. Waits up to WaitTimeSeconds (or the queue's
   * ReceiveMessageWaitTimeSeconds) for a message and returns as soon as one is available;
   * `signal` ends the wait early (client gone, endpoint closing) with no messages taken.
   */
  async receiveMessage(input: InputReader, signal?: AbortSignal): Promise<{ Messages?: Record<string, unknown>[] }> {
    const queue = this.#byUrl(input.string('QueueUrl'));
    const max = input.optionalInteger('MaxNumberOfMessages') ?? 1;
    if (max < 1 || max > MAX_BATCH_ENTRIES) {
      throw sqsError('InvalidParameterValue', `Value ${max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.`);
    }
    const visibility = input.optionalInteger('VisibilityTimeout') ?? Number(queue.settings.get('VisibilityTimeout'));
    if (visibility < 0 || visibility > 43200) {
      throw sqsError('InvalidParameterValue', `Value ${visibility} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200, if provided.`);
    }
    const wait = input.optionalInteger('WaitTimeSeconds') ?? Number(queue.settings.get('ReceiveMessageWaitTimeSeconds'));
    if (wait < 0 || wait > 20) {
      throw sqsError('InvalidParameterValue', `Value ${wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.`);
    }
    const systemNames = new Set([...input.stringList('AttributeNames'), ...input.stringList('MessageSystemAttributeNames')]);
    const attributeNames = input.stringList('MessageAttributeNames');
    const attemptId = input.optionalString('ReceiveRequestAttemptId');
    if (attemptId !== undefined && !FIFO_TOKEN.test(attemptId)) {
      throw sqsError(
        'InvalidParameterValue',
        `Value ${attemptId} for parameter ReceiveRequestAttemptId is invalid. Reason: up to 128 alphanumeric or punctuation characters are allowed.`,
      );
    }
    const toWire = (messages: StoredMessage[]): { Messages?: Record<string, unknown>[] } =>
      messages.length > 0 ? { Messages: messages.map((m) => this.#wireMessage(queue, m, systemNames, attributeNames)) } : {};

    const attempt = (): StoredMessage[] | undefined => {
      if (signal?.aborted) return undefined;
      const now = this.#now();
      if (queue.fifo && attemptId !== undefined) {
        const repeated = this.#repeatAttempt(queue, attemptId, visibility, now);
        if (repeated) return repeated;
      }
      if (queue.state.inFlightCount >= MAX_IN_FLIGHT) {
        if (queue.fifo) return [];
        throw sqsError('OverLimit', `Queue ${queue.name} has ${MAX_IN_FLIGHT} messages in flight, the most SQS allows.`);
      }
      const messages = queue.state.receive(
        max,
        visibility * 1000,
        now,
        SqsService.#retentionMs(queue),
        () => this.#nonce(),
        queue.redrive ? { maxReceiveCount: queue.redrive.maxReceiveCount, deadLetter: this.#deadLetter(queue) as (m: StoredMessage) => boolean } : undefined,
      );
      if (messages.length > 0) {
        if (queue.fifo && attemptId !== undefined) {
          queue.receiveAttempts.set(attemptId, {
            expiresAt: now + RECEIVE_ATTEMPT_MS,
            messages: messages.map((m) => ({ message: m, nonce: m.receiptNonce as string })),
          });
        }
        this.#changed();
      }
      return messages;
    };

    const first = attempt();
    if (first === undefined) return {};
    if (first.length > 0 || wait === 0) return toWire(first);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        attempt,
        finish: (result) => {
          queue.waiters.delete(waiter);
          cancelTimer();
          signal?.removeEventListener('abort', onAbort);
          if (Array.isArray(result)) resolve(toWire(result));
          else reject(result);
        },
      };
      const onAbort = (): void => waiter.finish([]);
      // WaitTimeSeconds runs on the endpoint's clock, like every other SQS timer here.
      const cancelTimer = this.#options.clock.setTimer(this.#now() + wait * 1000, () => waiter.finish([]));
      signal?.addEventListener('abort', onAbort, { once: true });
      queue.waiters.add(waiter);
      this.#scheduleWake(queue);
    });
  }

  #repeatAttempt(queue: Queue, attemptId: string, visibility: number, now: number): StoredMessage[] | undefined {
    for (const [id, a] of queue.receiveAttempts) if (a.expiresAt <= now) queue.receiveAttempts.delete(id);
    const previous = queue.receiveAttempts.get(attemptId);
    if (!previous) return undefined;
    const unchanged = previous.messages.every(
      ({ message, nonce }) => queue.state.get(message.messageId) === message && message.inFlight && message.receiptNonce === nonce,
    );
    if (!unchanged) return undefined;
    for (const { message } of previous.messages) queue.state.changeVisibility(message, visibility * 1000, now);
    return previous.messages.map((m) => m.message);
  }

  #notify(queue: Queue): void {
    if (this.#queues.get(queue.name) !== queue) return;
    for (const waiter of [...queue.waiters]) {
      let messages: StoredMessage[] | undefined;
      try {
        messages = waiter.attempt();
      } catch (error) {
        waiter.finish(error as AwsApiError);
        continue;
      }
      if (messages === undefined) {
        waiter.finish([]);
      } else if (messages.length > 0) {
        waiter.finish(messages);
      } else {
        break;
      }
    }
    this.#scheduleWake(queue);
  }

  /** Wakes the waiters of `queue` when its next hidden message becomes visible. */
  #scheduleWake(queue: Queue): void {
    if (queue.waiters.size === 0 || this.#closed) {
      queue.wakeTimer?.();
      queue.wakeTimer = undefined;
      queue.wakeAt = Number.POSITIVE_INFINITY;
      return;
    }
    const at = queue.state.nextChange();
    if (!Number.isFinite(at) || (queue.wakeTimer && queue.wakeAt <= at)) return;
    queue.wakeTimer?.();
    queue.wakeAt = at;
    queue.wakeTimer = this.#options.clock.setTimer(at, () => {
      queue.wakeTimer = undefined;
      queue.wakeAt = Number.POSITIVE_INFINITY;
      this.#notify(queue);
    });
  }

  // ---- after receiving ---------------------------------------------------------------

  /** The in-flight message a receipt handle names (ChangeMessageVisibility). */
  #inFlightByReceipt(queue: Queue, handle: string): StoredMessage {
    const { messageId, nonce } = this.#decodeReceipt(queue, handle);
    queue.state.tick(this.#now());
    const message = queue.state.get(messageId);
    if (!message || !message.inFlight) {
      throw sqsError('MessageNotInflight', `Message ${messageId} is not in flight (it was deleted, or its visibility timeout expired).`);
    }
    if (message.receiptNonce !== nonce) {
      throw sqsError('InvalidParameterValue', `Value ${handle} for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.`);
    }
    return message;
  }

  #delete(queue: Queue, handle: string): void {
    const { messageId, nonce } = this.#decodeReceipt(queue, handle);
    const now = this.#now();
    queue.state.tick(now);
    const message = queue.state.get(messageId);
    if (!message) return; // Already deleted: DeleteMessage succeeds.
    if (queue.fifo && (!message.inFlight || message.receiptNonce !== nonce)) {
      throw sqsError('InvalidParameterValue', `Value ${handle} for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.`);
    }
    queue.state.remove(message);
  }

  /** DeleteMessage. */
  deleteMessage(input: InputReader): Record<string, never> {
    const queue = this.#byUrl(input.string('QueueUrl'));
    this.#delete(queue, input.string('ReceiptHandle'));
    this.#changed(queue);
    return {};
  }

  /** DeleteMessageBatch. */
  deleteMessageBatch(input: InputReader): { Successful: { Id: string }[]; Failed: BatchFailure[] } {
    const queue = this.#byUrl(input.string('QueueUrl'));
    const entries = this.#checkBatch(input.optionalObjectList('Entries'), 'DeleteMessageBatch');
    const result = SqsService.#eachEntry(entries, (entry) => this.#delete(queue, entry.string('ReceiptHandle')));
    this.#changed(queue);
    return result;
  }

  /** Runs `action` for every batch entry; an entry that throws is reported as failed, the others as successful. */
  static #eachEntry(entries: readonly InputReader[], action: (entry: InputReader) => void): { Successful: { Id: string }[]; Failed: BatchFailure[] } {
    const Successful: { Id: string }[] = [];
    const Failed: BatchFailure[] = [];
    for (const entry of entries) {
      const id = entry.string('Id');
      try {
        action(entry);
        Successful.push({ Id: id });
      } catch (error) {
        Failed.push(SqsService.#failure(id, error));
      }
    }
    return { Successful, Failed };
  }

  #changeVisibility(queue: Queue, handle: string, timeout: number | undefined): void {
    if (timeout === undefined) throw sqsError('MissingParameter', 'The request must contain the parameter VisibilityTimeout.');
    const now = this.#now();
    const message = this.#inFlightByReceipt(queue, handle);
    if (timeout < 0 || timeout > 43200) {
      throw sqsError('InvalidParameterValue', `Value ${timeout} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200.`);
    }
    // "the new timeout period applies only to the particular receipt of the message"
    // (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html):
    // the 12-hour limit counts from the receive that returned this receipt handle.
    const limit = (message.lastReceiveTimestamp ?? now) + 43200 * 1000;
    if (now + timeout * 1000 > limit) {
      throw sqsError(
        'InvalidParameterValue',
        `Value ${timeout} for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds].`,
      );
    }
    queue.state.changeVisibility(message, timeout * 1000, now);
  }

  /** ChangeMessageVisibility. */
  changeMessageVisibility(input: InputReader): Record<string, never> {
    const queue = this.#byUrl(input.string('QueueUrl'));
    this.#changeVisibility(queue, input.string('ReceiptHandle'), input.optionalInteger('VisibilityTimeout'));
    this.#changed(queue);
    return {};
  }

  /** ChangeMessageVisibilityBatch. */
  changeMessageVisibilityBatch(input: InputReader): { Successful: { Id: string }[]; Failed: BatchFailure[] } {
    const queue = this.#byUrl(input.string('QueueUrl'));
    const entries = this.#checkBatch(input.optionalObjectList('Entries'), 'ChangeMessageVisibilityBatch');
    const result = SqsService.#eachEntry(entries, (entry) =>
      this.#changeVisibility(queue, entry.string('ReceiptHandle'), entry.optionalInteger('VisibilityTimeout')),
    );
    this.#changed(queue);
    return result;
  }

  // ---- message move tasks ------------------------------------------------------------

  /** StartMessageMoveTask: moves the messages of a dead-letter queue back, oldest first. */
  startMessageMoveTask(input: InputReader): { TaskHandle: string } {
    const sourceArn = input.string('SourceArn');
    const destinationArn = input.optionalString('DestinationArn');
    const rate = input.optionalInteger('MaxNumberOfMessagesPerSecond');
    const source = this.#byArn(sourceArn);
    if (!source) throw sqsError('ResourceNotFoundException', `The resource that you specified for the SourceArn parameter doesn't exist: ${sourceArn}.`);
    if (![...this.#queues.values()].some((q) => q.redrive?.deadLetterTargetArn === sourceArn)) {
      throw sqsError('InvalidParameterValue', `Source queue must be configured as a Dead Letter Queue: ${sourceArn} is not the deadLetterTargetArn of any queue.`);
    }
    if (destinationArn !== undefined) {
      const destination = this.#byArn(destinationArn);
      if (!destination) {
        throw sqsError('ResourceNotFoundException', `The resource that you specified for the DestinationArn parameter doesn't exist: ${destinationArn}.`);
      }
      if (destination.fifo !== source.fifo) {
        throw sqsError('InvalidParameterValue', `Messages of ${source.fifo ? 'a FIFO' : 'a standard'} queue can be moved only to a queue of the same type, not to ${destinationArn}.`);
      }
    }
    if (rate !== undefined && (rate < 1 || rate > 500)) {
      throw sqsError('InvalidParameterValue', `Value ${rate} for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: it must be from 1 to 500.`);
    }
    if (this.#tasks.some((t) => t.sourceArn === sourceArn && (t.status === 'RUNNING' || t.status === 'CANCELLING'))) {
      throw sqsError('UnsupportedOperation', `There is already a task running. Only one active task is allowed for a source queue arn at a given time: ${sourceArn}.`);
    }
    const now = this.#now();
    const task: MoveTask = {
      handle: Buffer.from(JSON.stringify({ taskId: randomUUID(), sourceArn }), 'utf8').toString('base64'),
      sourceArn,
      destinationArn,
      rate,
      startedAt: now,
      toMove: source.state.size,
      status: 'RUNNING',
      moved: 0,
      failureReason: undefined,
      timer: undefined,
    };
    this.#tasks.push(task);
    this.#scheduleTask(task, true);
    this.#changed();
    return { TaskHandle: task.handle };
  }

  #scheduleTask(task: MoveTask, immediately: boolean): void {
    if (this.#closed) return;
    if (task.rate !== undefined && !immediately) {
      // A rate-limited task moves its next MaxNumberOfMessagesPerSecond one second later on the endpoint's clock.
      task.timer = this.#options.clock.setTimer(this.#now() + 1000, () => this.#stepTask(task));
    } else {
      const immediate = setImmediate(() => this.#stepTask(task));
      task.timer = () => clearImmediate(immediate);
    }
  }

  #finishTask(task: MoveTask, status: MoveTaskStatus, reason?: string): void {
    task.status = status;
    task.failureReason = reason;
    task.timer?.();
    task.timer = undefined;
    this.#changed();
  }

  #stepTask(task: MoveTask): void {
    task.timer = undefined;
    if (task.status !== 'RUNNING') return;
    const source = this.#byArn(task.sourceArn);
    if (!source) return this.#finishTask(task, 'FAILED', `source queue ${task.sourceArn} no longer exists`);
    const want = Math.min(task.rate ?? MOVE_STEP, task.toMove - task.moved);
    const now = this.#now();
    const messages = want > 0 ? source.state.takeVisible(want, now, SqsService.#retentionMs(source)) : [];
    for (const [i, message] of messages.entries()) {
      const destinationArn = task.destinationArn ?? message.deadLetterSourceArn;
      const destination = destinationArn !== undefined ? this.#byArn(destinationArn) : undefined;
      if (!destination) {
        for (const back of messages.slice(i)) this.#append(source, back);
        return this.#finishTask(
          task,
          'FAILED',
          destinationArn === undefined
            ? `message ${message.messageId} did not come from another queue and no DestinationArn was given`
            : `destination queue ${destinationArn} does not exist`,
        );
      }
      this.#append(destination, SqsService.#redriven(message, now));
      task.moved += 1;
    }
    this.#changed(source);
    if (messages.length === 0 || task.moved >= task.toMove) return this.#finishTask(task, 'COMPLETED');
    this.#scheduleTask(task, false);
  }

  /**
   * The message a move task puts into its destination. "All redriven messages are
   * considered new messages and are assigned a new messageID and enqueueTime", and "the
   * redrive task resets the retention period"; the destination "ingests the redriven
   * messages, as well as new messages from other producers, according to the order in which
   * it receives them" — so in a FIFO queue a redriven message goes behind what is already
   * there and interleaves with messages sent meanwhile, rather than returning to its old
   * place ("Learn how to configure a dead-letter queue redrive in Amazon SQS",
   * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-configure-dead-letter-queue-redrive.html).
   * Being new, it starts at receive count 0 and has no DeadLetterQueueSourceArn. Its body,
   * attributes, group and deduplication id (in a FIFO dead-letter queue: the id of the
   * message it was) are kept.
   */
  static #redriven(message: StoredMessage, now: number): StoredMessage {
    return {
      ...message,
      messageId: randomUUID(),
      sentTimestamp: now,
      arrivedAt: now,
      retainedFrom: now,
      deadLetterSourceArn: undefined,
      receiveCount: 0,
      firstReceiveTimestamp: undefined,
      lastReceiveTimestamp: undefined,
      inFlight: false,
      visibleAt: 0,
      receiptNonce: undefined,
    };
  }

  static #retentionMs(queue: Queue): number {
    return 1000 * Number(queue.settings.get('MessageRetentionPeriod'));
  }

  /** ListMessageMoveTasks: the most recent tasks of a source queue, newest first. */
  listMessageMoveTasks(input: InputReader): { Results: Record<string, unknown>[] } {
    const sourceArn = input.string('SourceArn');
    const max = input.optionalInteger('MaxResults') ?? 1;
    if (!this.#byArn(sourceArn)) throw sqsError('ResourceNotFoundException', `The resource that you specified for the SourceArn parameter doesn't exist: ${sourceArn}.`);
    if (max < 1 || max > 10) throw sqsError('InvalidParameterValue', `Value ${max} for parameter MaxResults is invalid. Reason: it must be from 1 to 10.`);
    const tasks = this.#tasks.filter((t) => t.sourceArn === sourceArn).reverse().slice(0, max);
    return {
      Results: tasks.map((t) => ({
        ...(t.status === 'RUNNING' ? { TaskHandle: t.handle } : {}),
        Status: t.status,
        SourceArn: t.sourceArn,
        ...(t.destinationArn !== undefined ? { DestinationArn: t.destinationArn } : {}),
        ...(t.rate !== undefined ? { MaxNumberOfMessagesPerSecond: t.rate } : {}),
        ApproximateNumberOfMessagesMoved: t.moved,
        ApproximateNumberOfMessagesToMove: t.toMove,
        ...(t.failureReason !== undefined ? { FailureReason: t.failureReason } : {}),
        StartedTimestamp: t.startedAt,
      })),
    };
  }

  /** CancelMessageMoveTask. */
  cancelMessageMoveTask(input: InputReader): { ApproximateNumberOfMessagesMoved: number } {
    const handle = input.string('TaskHandle');
    const task = this.#tasks.find((t) => t.handle === handle);
    if (!task) throw sqsError('ResourceNotFoundException', `No message movement task has the handle ${handle}.`);
    if (task.status !== 'RUNNING') {
      throw sqsError('UnsupportedOperation', `Only a RUNNING task can be cancelled; task ${handle} is ${task.status}.`);
    }
    this.#finishTask(task, 'CANCELLED');
    return { ApproximateNumberOfMessagesMoved: task.moved };
  }

  // ---- lifecycle and persistence -----------------------------------------------------

  /** Per-queue statistics, including the age of the oldest message (not an SQS queue attribute). */
  stats(): {
    name: string;
    url: string;
    arn: string;
    fifo: boolean;
    visible: number;
    inFlight: number;
    delayed: number;
    oldestAgeSeconds: number | null;
    waiting: number;
  }[] {
    const now = this.#now();
    return [...this.#queues.values()].map((q) => {
      const counts = q.state.counts(now, SqsService.#retentionMs(q));
      return {
        name: q.name,
        url: this.queueUrl(q.name),
        arn: q.arn,
        fifo: q.fifo,
        visible: counts.visible,
        inFlight: counts.inFlight,
        delayed: counts.delayed,
        oldestAgeSeconds: counts.oldestArrival === undefined ? null : Math.max(0, Math.floor((now - counts.oldestArrival) / 1000)),
        waiting: q.waiters.size,
      };
    });
  }

  /** Ends every wait and timer; waiting receives return no messages. */
  close(): void {
    this.#closed = true;
    for (const queue of this.#queues.values()) {
      queue.wakeTimer?.();
      queue.wakeTimer = undefined;
      for (const waiter of [...queue.waiters]) waiter.finish([]);
    }
    for (const task of this.#tasks) {
      task.timer?.();
      task.timer = undefined;
    }
  }

  /** The state to persist. */
  snapshot(): SqsSnapshot {
    return {
      queues: [...this.#queues.values()].map((q) => ({
        name: q.name,
        fifo: q.fifo,
        createdAt: q.createdAt,
        lastModified: q.lastModified,
        settings: Object.fromEntries(q.settings),
        tags: Object.fromEntries(q.tags),
        ...(q.lastPurgeAt !== undefined ? { lastPurgeAt: q.lastPurgeAt } : {}),
        state: q.state.snapshot(),
      })),
      deletedAt: Object.fromEntries(this.#deletedAt),
      tasks: this.#tasks.map((t) => ({
        handle: t.handle,
        sourceArn: t.sourceArn,
        ...(t.destinationArn !== undefined ? { destinationArn: t.destinationArn } : {}),
        ...(t.rate !== undefined ? { rate: t.rate } : {}),
        startedAt: t.startedAt,
        toMove: t.toMove,
        status: t.status,
        moved: t.moved,
        ...(t.failureReason !== undefined ? { failureReason: t.failureReason } : {}),
      })),
    };
  }

  /** Replaces the state with a persisted one; running move tasks continue. */
  restore(snapshot: SqsSnapshot): void {
    const now = this.#now();
    this.#queues.clear();
    for (const saved of snapshot.queues) {
      const settings = new Map(Object.entries(saved.settings)) as Map<SettableAttribute, string>;
      const redriveRaw = settings.get('RedrivePolicy');
      this.#queues.set(saved.name, {
        name: saved.name,
        arn: this.#arn(saved.name),
        fifo: saved.fifo,
        createdAt: saved.createdAt,
        lastModified: saved.lastModified,
        settings,
        redrive: redriveRaw ? parseRedrivePolicy(redriveRaw) : undefined,
        tags: new Map(Object.entries(saved.tags)),
        state: QueueState.restore(saved.fifo, saved.state, now),
        lastPurgeAt: saved.lastPurgeAt,
        waiters: new Set(),
        wakeTimer: undefined,
        wakeAt: Number.POSITIVE_INFINITY,
        notifyScheduled: false,
        receiveAttempts: new Map(),
      });
    }
    this.#deletedAt.clear();
    for (const [name, at] of Object.entries(snapshot.deletedAt)) this.#deletedAt.set(name, at);
    this.#tasks.length = 0;
    for (const t of snapshot.tasks) {
      const task: MoveTask = {
        handle: t.handle,
        sourceArn: t.sourceArn,
        destinationArn: t.destinationArn,
        rate: t.rate,
        startedAt: t.startedAt,
        toMove: t.toMove,
        status: t.status,
        moved: t.moved,
        failureReason: t.failureReason,
        timer: undefined,
      };
      this.#tasks.push(task);
      if (task.status === 'RUNNING') this.#scheduleTask(task, true);
    }
  }
}

/** Attribute map in the AWS JSON 1.0 wire shape. */
function wireAttributes(attributes: ReadonlyMap<string, AttributeValue>): Record<string, WireAttributeValue> {
  const out: Record<string, WireAttributeValue> = {};
  for (const [name, value] of attributes) {
    out[name] = {
      DataType: value.dataType,
      ...(value.stringValue !== undefined ? { StringValue: value.stringValue } : {}),
      ...(value.binaryValue !== undefined ? { BinaryValue: value.binaryValue.toString('base64') } : {}),
      StringListValues: [],
      BinaryListValues: [],
    };
  }
  return out;
}
