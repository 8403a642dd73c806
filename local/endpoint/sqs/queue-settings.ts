/**
 * Queue attributes that CreateQueue and SetQueueAttributes accept: names, allowed values
 * and defaults exactly as the SQS API reference (`CreateQueue`, `SetQueueAttributes`)
 * lists them, parsed into a canonical string form so that CreateQueue can tell an
 * identical repeat from a conflicting one.
 */
import { sqsError } from '../errors.ts';

/** A queue's dead-letter configuration (`RedrivePolicy`). */
export interface RedrivePolicy {
  readonly deadLetterTargetArn: string;
  /** Receives after which the next receive moves the message to the dead-letter queue (1–1000). */
  readonly maxReceiveCount: number;
}

/** Attributes a caller may set; `FifoQueue` only at creation. */
export const SETTABLE_ATTRIBUTES = [
  'DelaySeconds',
  'MaximumMessageSize',
  'MessageRetentionPeriod',
  'Policy',
  'ReceiveMessageWaitTimeSeconds',
  'VisibilityTimeout',
  'RedrivePolicy',
  'RedriveAllowPolicy',
  'KmsMasterKeyId',
  'KmsDataKeyReusePeriodSeconds',
  'SqsManagedSseEnabled',
  'FifoQueue',
  'ContentBasedDeduplication',
  'DeduplicationScope',
  'FifoThroughputLimit',
] as const;

/** A settable attribute name. */
export type SettableAttribute = (typeof SETTABLE_ATTRIBUTES)[number];

/** Attributes that exist only on FIFO queues. */
const FIFO_ONLY: ReadonlySet<string> = new Set(['FifoQueue', 'ContentBasedDeduplication', 'DeduplicationScope', 'FifoThroughputLimit']);

/** Every attribute name GetQueueAttributes knows (the SQS `QueueAttributeName` enum). */
export const READABLE_ATTRIBUTES: ReadonlySet<string> = new Set([
  'All',
  'ApproximateNumberOfMessages',
  'ApproximateNumberOfMessagesDelayed',
  'ApproximateNumberOfMessagesNotVisible',
  'ContentBasedDeduplication',
  'CreatedTimestamp',
  'DeduplicationScope',
  'DelaySeconds',
  'FifoQueue',
  'FifoThroughputLimit',
  'KmsDataKeyReusePeriodSeconds',
  'KmsMasterKeyId',
  'LastModifiedTimestamp',
  'MaximumMessageSize',
  'MessageRetentionPeriod',
  'Policy',
  'QueueArn',
  'ReceiveMessageWaitTimeSeconds',
  'RedriveAllowPolicy',
  'RedrivePolicy',
  'SqsManagedSseEnabled',
  'VisibilityTimeout',
]);

/** Default values of a new queue (SQS `CreateQueue`). */
export function defaultSettings(fifo: boolean): Map<SettableAttribute, string> {
  const settings = new Map<SettableAttribute, string>([
    ['DelaySeconds', '0'],
    ['MaximumMessageSize', '1048576'],
    ['MessageRetentionPeriod', '345600'],
    ['ReceiveMessageWaitTimeSeconds', '0'],
    ['VisibilityTimeout', '30'],
    ['SqsManagedSseEnabled', 'true'],
  ]);
  if (fifo) {
    settings.set('FifoQueue', 'true');
    settings.set('ContentBasedDeduplication', 'false');
    settings.set('DeduplicationScope', 'queue');
    settings.set('FifoThroughputLimit', 'perQueue');
  }
  return settings;
}

function integerIn(name: string, raw: string, min: number, max: number): string {
  const trimmed = raw.trim();
  const value = Number(trimmed);
  if (!/^\d+$/.test(trimmed) || value < min || value > max) {
    throw sqsError('InvalidAttributeValue', `Invalid value for the parameter ${name}: "${raw}" (allowed: an integer from ${min} to ${max}).`);
  }
  return String(value);
}

function boolean(name: string, raw: string): string {
  const lower = raw.trim().toLowerCase();
  if (lower !== 'true' && lower !== 'false') {
    throw sqsError('InvalidAttributeValue', `Invalid value for the parameter ${name}: "${raw}" (allowed: true or false).`);
  }
  return lower;
}

function oneOf(name: string, raw: string, allowed: readonly string[]): string {
  if (!allowed.includes(raw)) {
    throw sqsError('InvalidAttributeValue', `Invalid value for the parameter ${name}: "${raw}" (allowed: ${allowed.join(', ')}).`);
  }
  return raw;
}

function jsonObject(name: string, raw: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw sqsError('InvalidParameterValue', `Value ${raw} for parameter ${name} is invalid. Reason: Invalid JSON.`, { cause: err });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw sqsError('InvalidParameterValue', `Value ${raw} for parameter ${name} is invalid. Reason: it must be a JSON object.`);
  }
  return parsed as Record<string, unknown>;
}

/** Parses a `RedrivePolicy` value; "" removes the policy (returned as undefined). */
export function parseRedrivePolicy(raw: string): RedrivePolicy | undefined {
  if (raw.trim() === '') return undefined;
  const value = jsonObject('RedrivePolicy', raw);
  const target = value.deadLetterTargetArn;
  const count = typeof value.maxReceiveCount === 'string' ? Number(value.maxReceiveCount) : value.maxReceiveCount;
  if (typeof target !== 'string' || !/^arn:aws[\w-]*:sqs:[\w-]+:\d{12}:[\w-]+(\.fifo)?$/.test(target)) {
    throw sqsError(
      'InvalidParameterValue',
      `Value ${raw} for parameter RedrivePolicy is invalid. Reason: deadLetterTargetArn must be the ARN of an SQS queue, got ${JSON.stringify(target)}.`,
    );
  }
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 1000) {
    throw sqsError(
      'InvalidParameterValue',
      `Value ${raw} for parameter RedrivePolicy is invalid. Reason: maxReceiveCount must be an integer from 1 to 1000, got ${JSON.stringify(value.maxReceiveCount)}.`,
    );
  }
  return { deadLetterTargetArn: target, maxReceiveCount: count };
}

function canonicalRedriveAllowPolicy(raw: string): string {
  if (raw.trim() === '') return '';
  const value = jsonObject('RedriveAllowPolicy', raw);
  const permission = value.redrivePermission;
  if (permission !== 'allowAll' && permission !== 'denyAll' && permission !== 'byQueue') {
    throw sqsError(
      'InvalidParameterValue',
      `Value ${raw} for parameter RedriveAllowPolicy is invalid. Reason: redrivePermission must be allowAll, denyAll or byQueue.`,
    );
  }
  const sources = value.sourceQueueArns;
  if (permission === 'byQueue') {
    if (!Array.isArray(sources) || sources.length < 1 || sources.length > 10 || !sources.every((s) => typeof s === 'string')) {
      throw sqsError(
        'InvalidParameterValue',
        `Value ${raw} for parameter RedriveAllowPolicy is invalid. Reason: byQueue needs sourceQueueArns, a list of 1 to 10 queue ARNs.`,
      );
    }
    return JSON.stringify({ redrivePermission: permission, sourceQueueArns: sources });
  }
  if (sources !== undefined) {
    throw sqsError(
      'InvalidParameterValue',
      `Value ${raw} for parameter RedriveAllowPolicy is invalid. Reason: sourceQueueArns is allowed only with redrivePermission byQueue.`,
    );
  }
  return JSON.stringify({ redrivePermission: permission });
}

/**
 * Validates attributes given to CreateQueue (`creating`) or SetQueueAttributes and returns
 * them in canonical form. Unknown names raise `InvalidAttributeName`, bad values
 * `InvalidAttributeValue` / `InvalidParameterValue`, naming the attribute and the value.
 */
export function parseQueueAttributes(
  input: Readonly<Record<string, string>>,
  fifo: boolean,
  creating: boolean,
): Map<SettableAttribute, string> {
  const out = new Map<SettableAttribute, string>();
  for (const [name, raw] of Object.entries(input)) {
    if (!(SETTABLE_ATTRIBUTES as readonly string[]).includes(name) || (FIFO_ONLY.has(name) && !fifo && name !== 'FifoQueue')) {
      throw sqsError('InvalidAttributeName', `Unknown Attribute ${name}.`);
    }
    const attribute = name as SettableAttribute;
    switch (attribute) {
      case 'DelaySeconds':
        out.set(attribute, integerIn(name, raw, 0, 900));
        break;
      case 'MaximumMessageSize':
        out.set(attribute, integerIn(name, raw, 1024, 1048576));
        break;
      case 'MessageRetentionPeriod':
        out.set(attribute, integerIn(name, raw, 60, 1209600));
        break;
      case 'ReceiveMessageWaitTimeSeconds':
        out.set(attribute, integerIn(name, raw, 0, 20));
        break;
      case 'VisibilityTimeout':
        out.set(attribute, integerIn(name, raw, 0, 43200));
        break;
      case 'KmsDataKeyReusePeriodSeconds':
        out.set(attribute, integerIn(name, raw, 60, 86400));
        break;
      case 'SqsManagedSseEnabled':
      case 'ContentBasedDeduplication':
        out.set(attribute, boolean(name, raw));
        break;
      case 'FifoQueue': {
        if (!creating) throw sqsError('InvalidAttributeName', 'Unknown Attribute FifoQueue (it can be set only when the queue is created).');
        const value = boolean(name, raw);
        if ((value === 'true') !== fifo) {
          throw sqsError(
            'InvalidParameterValue',
            'The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.',
          );
        }
        if (fifo) out.set(attribute, value);
        break;
      }
      case 'DeduplicationScope':
        out.set(attribute, oneOf(name, raw, ['messageGroup', 'queue']));
        break;
      case 'FifoThroughputLimit':
        out.set(attribute, oneOf(name, raw, ['perQueue', 'perMessageGroupId']));
        break;
      case 'RedrivePolicy': {
        const policy = parseRedrivePolicy(raw);
        out.set(attribute, policy ? JSON.stringify(policy) : '');
        break;
      }
      case 'RedriveAllowPolicy':
        out.set(attribute, canonicalRedriveAllowPolicy(raw));
        break;
      case 'Policy':
        if (raw.trim() !== '') jsonObject(name, raw);
        out.set(attribute, raw);
        break;
      case 'KmsMasterKeyId':
        out.set(attribute, raw);
        break;
    }
  }
  return out;
}
