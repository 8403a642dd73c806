/**
 * The SNS operations of the local endpoint: topics (standard and FIFO), SQS subscriptions
 * with raw delivery and filter policies, Publish and PublishBatch with FIFO ordering,
 * deduplication and AWS's size limits. Delivery to a subscribed queue happens inside the
 * publish call, through {@link SqsService.deliver}.
 *
 * Documented behaviour implemented here (SNS API reference and Developer Guide):
 * - FIFO topics: names end in `.fifo`; every message needs a MessageGroupId; a
 *   MessageDeduplicationId is needed unless ContentBasedDeduplication is on (then the
 *   SHA-256 of the body is used); a duplicate within 5 minutes (per topic, or per message
 *   group with FifoThroughputScope MessageGroup) is accepted but not delivered; sequence
 *   numbers increase; a batch is published in order. At most 100 subscriptions.
 * - Size: the body plus every message attribute (name, type, value) in UTF-8 bytes must
 *   not exceed the topic's MaximumMessageSize (default 262,144) — `InvalidParameter`; a
 *   PublishBatch may hold at most 10 entries (`TooManyEntriesInBatchRequest`) whose total
 *   may not exceed it either (`BatchRequestTooLong`).
 * - Raw delivery: the SQS message body is the published message, unchanged, and the
 *   message attributes become SQS message attributes. Otherwise the body is the JSON
 *   notification (Type, MessageId, SequenceNumber, TopicArn, Subject, Message, Timestamp,
 *   UnsubscribeURL, MessageAttributes). The local endpoint does not sign notifications.
 */
import { randomUUID } from 'node:crypto';
import { attributeBytes, attributeNameProblem, isNumberText, utf8Bytes } from '../attributes.ts';
import type { Clock } from '../clock.ts';
import { type AttributeValue, sha256OfText } from '../digest.ts';
import { AwsApiError, snsError } from '../errors.ts';
import type { SqsService } from '../sqs/service.ts';
import { type InputErrors, type InputReader, show } from '../wire/input.ts';
import { XmlMap } from '../wire/query.ts';
import { type CompiledFilterPolicy, compileFilterPolicy, FilterPolicyError, type FilterPolicyScope } from './filter-policy.ts';

/** The deduplication interval of FIFO topics: 5 minutes. */
const DEDUPLICATION_INTERVAL_MS = 5 * 60 * 1000;
/** Default and largest MaximumMessageSize of a topic. */
const DEFAULT_MAX_MESSAGE_BYTES = 262_144;
const LARGEST_MAX_MESSAGE_BYTES = 1_048_576;
/** Subscriptions a FIFO topic (or a topic accepting messages above 256 KiB) may have. */
const MAX_FIFO_SUBSCRIPTIONS = 100;
/** Filter policies one topic may have. */
const MAX_FILTER_POLICIES = 200;
const PAGE = 100;

/** SNS errors for missing or mistyped parameters. */
export const SNS_INPUT_ERRORS: InputErrors = {
  missing: (path) => snsError('InvalidParameter', `Invalid parameter: ${path} Reason: no value for required parameter`),
  invalid: (path, value, expected) => snsError('InvalidParameter', `Invalid parameter: ${path} Reason: ${show(value)} is not ${expected}`),
};

const TOPIC_ATTRIBUTES = new Set([
  'DeliveryPolicy',
  'DisplayName',
  'MaximumMessageSize',
  'Policy',
  'TracingConfig',
  'KmsMasterKeyId',
  'SignatureVersion',
  'FifoTopic',
  'ContentBasedDeduplication',
  'ArchivePolicy',
  'FifoThroughputScope',
  'DataProtectionPolicy',
  ...['HTTP', 'Firehose', 'Lambda', 'Application', 'SQS'].flatMap((p) => [
    `${p}SuccessFeedbackRoleArn`,
    `${p}SuccessFeedbackSampleRate`,
    `${p}FailureFeedbackRoleArn`,
  ]),
]);

const SUBSCRIPTION_ATTRIBUTES = new Set([
  'DeliveryPolicy',
  'FilterPolicy',
  'FilterPolicyScope',
  'RawMessageDelivery',
  'RedrivePolicy',
  'SubscriptionRoleArn',
  'ReplayPolicy',
]);

const TOPIC_NAME = /^[A-Za-z0-9_-]{1,256}$/;
const BATCH_ENTRY_ID = /^[A-Za-z0-9_-]{1,80}$/;
const FIFO_TOKEN = /^[A-Za-z0-9!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]{1,128}$/;

/** Where the service lives. */
export interface SnsServiceOptions {
  readonly clock: Clock;
  readonly region: string;
  readonly accountId: string;
  readonly baseUrl: () => string;
  readonly sqs: SqsService;
  /** Called after every change of state (persistence hooks here). */
  readonly onChange?: () => void;
  /** Called when a message could not be delivered to a subscription. */
  readonly onDeliveryFailure?: (failure: { subscriptionArn: string; endpoint: string; reason: string }) => void;
}

interface Subscription {
  readonly arn: string;
  readonly topicArn: string;
  readonly endpoint: string;
  readonly attributes: Map<string, string>;
  filter: CompiledFilterPolicy | undefined;
  delivered: number;
  filtered: number;
  failed: number;
}

interface Topic {
  readonly name: string;
  readonly arn: string;
  readonly fifo: boolean;
  readonly attributes: Map<string, string>;
  readonly tags: Map<string, string>;
  readonly subscriptions: Map<string, Subscription>;
  readonly deduplication: Map<string, { expiresAt: number; messageId: string; sequenceNumber: string | undefined }>;
  lastSequence: bigint;
  deleted: number;
}

/** A validated message, ready to publish. */
interface Outgoing {
  readonly body: string;
  readonly bodyForSqs: string;
  readonly subject: string | undefined;
  readonly attributes: Map<string, AttributeValue>;
  readonly groupId: string | undefined;
  readonly deduplicationId: string | undefined;
  readonly size: number;
}

/** Saved state of the SNS service. */
export interface SnsSnapshot {
  readonly topics: readonly {
    readonly name: string;
    readonly fifo: boolean;
    readonly attributes: Readonly<Record<string, string>>;
    readonly tags: Readonly<Record<string, string>>;
    readonly lastSequence: string;
    readonly deleted: number;
    readonly deduplication: readonly { key: string; expiresAt: number; messageId: string; sequenceNumber?: string }[];
    readonly subscriptions: readonly { arn: string; endpoint: string; attributes: Readonly<Record<string, string>> }[];
  }[];
}

/** The SNS half of the endpoint. */
export class SnsService {
  readonly #options: SnsServiceOptions;
  readonly #topics = new Map<string, Topic>();

  constructor(options: SnsServiceOptions) {
    this.#options = options;
  }

  #now(): number {
    return this.#options.clock.now();
  }

  #changed(): void {
    this.#options.onChange?.();
  }

  #arn(name: string): string {
    return `arn:aws:sns:${this.#options.region}:${this.#options.accountId}:${name}`;
  }

  #topic(arn: string | undefined, parameter = 'TopicArn'): Topic {
    if (arn === undefined) throw snsError('InvalidParameter', `Invalid parameter: ${parameter} Reason: no value for required parameter`);
    const prefix = `arn:aws:sns:${this.#options.region}:${this.#options.accountId}:`;
    if (!/^arn:aws[\w-]*:sns:[\w-]+:\d{12}:[A-Za-z0-9_.-]+$/.test(arn)) {
      throw snsError('InvalidParameter', `Invalid parameter: ${parameter} Reason: "${arn}" is not a topic ARN`);
    }
    const topic = arn.startsWith(prefix) ? this.#topics.get(arn.slice(prefix.length)) : undefined;
    if (!topic) throw snsError('NotFound', `Topic does not exist: ${arn}`);
    return topic;
  }

  #subscription(arn: string): { topic: Topic; subscription: Subscription } {
    for (const topic of this.#topics.values()) {
      const subscription = topic.subscriptions.get(arn);
      if (subscription) return { topic, subscription };
    }
    if (!/^arn:aws[\w-]*:sns:/.test(arn)) {
      throw snsError('InvalidParameter', `Invalid parameter: SubscriptionArn Reason: "${arn}" is not a subscription ARN`);
    }
    throw snsError('NotFound', `Subscription does not exist: ${arn}`);
  }

  // ---- topics ------------------------------------------------------------------------

  #checkTopicAttribute(topic: { fifo: boolean }, name: string, value: string, creating: boolean): string {
    if (!TOPIC_ATTRIBUTES.has(name)) throw snsError('InvalidParameter', `Invalid parameter: AttributeName Reason: unknown topic attribute ${name}`);
    switch (name) {
      case 'FifoTopic':
        if (!creating) throw snsError('InvalidParameter', 'Invalid parameter: AttributeName Reason: FifoTopic can be set only when the topic is created');
        if (value !== 'true' && value !== 'false') throw snsError('InvalidParameter', `Invalid parameter: FifoTopic Reason: must be true or false, got "${value}"`);
        return value;
      case 'ContentBasedDeduplication':
        if (!topic.fifo) {
          throw snsError('InvalidParameter', 'Invalid parameter: ContentBasedDeduplication Reason: Content-based deduplication can only be set for FIFO topics');
        }
        if (value !== 'true' && value !== 'false') {
          throw snsError('InvalidParameter', `Invalid parameter: ContentBasedDeduplication Reason: must be true or false, got "${value}"`);
        }
        return value;
      case 'FifoThroughputScope':
        if (!topic.fifo) throw snsError('InvalidParameter', 'Invalid parameter: FifoThroughputScope Reason: applies only to FIFO topics');
        if (value !== 'Topic' && value !== 'MessageGroup') {
          throw snsError('InvalidParameter', `Invalid parameter: FifoThroughputScope Reason: must be Topic or MessageGroup, got "${value}"`);
        }
        return value;
      case 'MaximumMessageSize': {
        const n = Number(value);
        if (!/^\d+$/.test(value) || n < 1024 || n > LARGEST_MAX_MESSAGE_BYTES) {
          throw snsError('InvalidParameter', `Invalid parameter: MaximumMessageSize Reason: must be an integer from 1024 to 1048576, got "${value}"`);
        }
        return String(n);
      }
      case 'SignatureVersion':
        if (value !== '1' && value !== '2') throw snsError('InvalidParameter', `Invalid parameter: SignatureVersion Reason: must be 1 or 2, got "${value}"`);
        return value;
      case 'Policy':
      case 'DeliveryPolicy':
      case 'ArchivePolicy':
        if (value !== '') {
          try {
            JSON.parse(value);
          } catch {
            throw snsError('InvalidParameter', `Invalid parameter: ${name} Reason: not valid JSON`);
          }
        }
        return value;
      default:
        return value;
    }
  }

  /** CreateTopic: idempotent for an identical name and attributes. */
  createTopic(input: InputReader): { TopicArn: string } {
    const name = input.string('Name');
    const attributes = input.stringMap('Attributes');
    const fifo = attributes.FifoTopic === 'true';
    const base = name.endsWith('.fifo') ? name.slice(0, -'.fifo'.length) : name;
    if (fifo !== name.endsWith('.fifo') || !TOPIC_NAME.test(base) || name.length > 256) {
      throw snsError(
        'InvalidParameter',
        fifo || name.endsWith('.fifo')
          ? `Invalid parameter: Topic Name Reason: Fifo Topic names must end with .fifo and must be made up of only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and must be between 1 and 256 characters long; got "${name}" with FifoTopic=${attributes.FifoTopic ?? 'unset'}`
          : `Invalid parameter: Topic Name Reason: must be made up of only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and must be between 1 and 256 characters long; got "${name}"`,
      );
    }
    const checked = new Map<string, string>();
    for (const [k, v] of Object.entries(attributes)) checked.set(k, this.#checkTopicAttribute({ fifo }, k, v, true));
    const existing = this.#topics.get(name);
    if (existing) {
      for (const [k, v] of checked) {
        if ((existing.attributes.get(k) ?? this.#defaultTopicAttribute(existing, k)) !== v) {
          throw snsError('InvalidParameter', `Invalid parameter: Attributes Reason: Topic already exists with different attributes (${k})`);
        }
      }
      return { TopicArn: existing.arn };
    }
    const topic: Topic = {
      name,
      arn: this.#arn(name),
      fifo,
      attributes: checked,
      tags: new Map(),
      subscriptions: new Map(),
      deduplication: new Map(),
      lastSequence: 0n,
      deleted: 0,
    };
    for (const tag of input.optionalObjectList('Tags') ?? []) topic.tags.set(tag.string('Key'), tag.string('Value'));
    this.#topics.set(name, topic);
    this.#changed();
    return { TopicArn: topic.arn };
  }

  #defaultTopicAttribute(topic: Topic, name: string): string | undefined {
    switch (name) {
      case 'FifoTopic':
        return topic.fifo ? 'true' : 'false';
      case 'ContentBasedDeduplication':
        return topic.fifo ? 'false' : undefined;
      case 'FifoThroughputScope':
        return topic.fifo ? 'Topic' : undefined;
      default:
        return undefined;
    }
  }

  /** GetTopicAttributes. */
  getTopicAttributes(input: InputReader): { Attributes: XmlMap } {
    const topic = this.#topic(input.optionalString('TopicArn'));
    const out: Record<string, string> = {
      TopicArn: topic.arn,
      Owner: this.#options.accountId,
      Policy: JSON.stringify({
        Version: '2008-10-17',
        Id: '__default_policy_ID',
        Statement: [
          {
            Sid: '__default_statement_ID',
            Effect: 'Allow',
            Principal: { AWS: '*' },
            Action: ['SNS:Publish', 'SNS:Subscribe', 'SNS:GetTopicAttributes', 'SNS:ListSubscriptionsByTopic'],
            Resource: topic.arn,
            Condition: { StringEquals: { 'AWS:SourceOwner': this.#options.accountId } },
          },
        ],
      }),
      DisplayName: '',
      SubscriptionsPending: '0',
      SubscriptionsConfirmed: String(topic.subscriptions.size),
      SubscriptionsDeleted: String(topic.deleted),
      EffectiveDeliveryPolicy: JSON.stringify({
        http: {
          defaultHealthyRetryPolicy: {
            minDelayTarget: 20,
            maxDelayTarget: 20,
            numRetries: 3,
            numMaxDelayRetries: 0,
            numNoDelayRetries: 0,
            numMinDelayRetries: 0,
            backoffFunction: 'linear',
          },
          disableSubscriptionOverrides: false,
          defaultRequestPolicy: { headerContentType: 'text/plain; charset=UTF-8' },
        },
      }),
    };
    if (topic.fifo) {
      out.FifoTopic = 'true';
      out.ContentBasedDeduplication = 'false';
      out.FifoThroughputScope = 'Topic';
    }
    for (const [k, v] of topic.attributes) out[k] = v;
    return { Attributes: new XmlMap(out) };
  }

  /** SetTopicAttributes. */
  setTopicAttributes(input: InputReader): Record<string, never> {
    const topic = this.#topic(input.optionalString('TopicArn'));
    const name = input.string('AttributeName');
    const value = input.optionalString('AttributeValue') ?? '';
    topic.attributes.set(name, this.#checkTopicAttribute(topic, name, value, false));
    this.#changed();
    return {};
  }

  /** DeleteTopic: idempotent; removes the topic's subscriptions. */
  deleteTopic(input: InputReader): Record<string, never> {
    const arn = input.string('TopicArn');
    try {
      const topic = this.#topic(arn);
      this.#topics.delete(topic.name);
      this.#changed();
    } catch (error) {
      if (!(error instanceof AwsApiError && error.kind.code === 'NotFound')) throw error;
    }
    return {};
  }

  /** ListTopics. */
  listTopics(input: InputReader): { Topics: { TopicArn: string }[]; NextToken?: string } {
    const arns = [...this.#topics.values()].map((t) => t.arn).sort();
    const { items, next } = page(arns, input.optionalString('NextToken'));
    return { Topics: items.map((arn) => ({ TopicArn: arn })), ...(next !== undefined ? { NextToken: next } : {}) };
  }

  // ---- subscriptions -----------------------------------------------------------------

  #checkSubscriptionAttribute(topic: Topic, name: string, value: string): string {
    if (!SUBSCRIPTION_ATTRIBUTES.has(name)) {
      throw snsError('InvalidParameter', `Invalid parameter: AttributeName Reason: unknown subscription attribute ${name}`);
    }
    switch (name) {
      case 'RawMessageDelivery': {
        const lower = value.toLowerCase();
        if (lower !== 'true' && lower !== 'false') {
          throw snsError('InvalidParameter', `Invalid parameter: RawMessageDelivery Reason: must be true or false, got "${value}"`);
        }
        return lower;
      }
      case 'FilterPolicyScope':
        if (value !== 'MessageAttributes' && value !== 'MessageBody') {
          throw snsError('InvalidParameter', `Invalid parameter: FilterPolicyScope Reason: must be MessageAttributes or MessageBody, got "${value}"`);
        }
        return value;
      case 'RedrivePolicy': {
        if (value === '') return value;
        let target: unknown;
        try {
          target = (JSON.parse(value) as { deadLetterTargetArn?: unknown }).deadLetterTargetArn;
        } catch {
          throw snsError('InvalidParameter', 'Invalid parameter: RedrivePolicy Reason: not valid JSON');
        }
        const queue = typeof target === 'string' ? this.#options.sqs.describeArn(target) : undefined;
        if (!queue) throw snsError('InvalidParameter', `Invalid parameter: RedrivePolicy Reason: deadLetterTargetArn ${show(target)} is not an existing SQS queue`);
        if (queue.fifo !== topic.fifo) {
          throw snsError('InvalidParameter', 'Invalid parameter: RedrivePolicy Reason: the dead-letter queue of a FIFO topic subscription must be a FIFO queue, and of a standard topic a standard queue');
        }
        return value;
      }
      default:
        return value;
    }
  }

  #compileFilter(attributes: Map<string, string>): CompiledFilterPolicy | undefined {
    const policy = attributes.get('FilterPolicy');
    if (policy === undefined || policy.trim() === '' || policy.trim() === '{}') return undefined;
    const scope = (attributes.get('FilterPolicyScope') ?? 'MessageAttributes') as FilterPolicyScope;
    try {
      return compileFilterPolicy(policy, scope);
    } catch (error) {
      if (error instanceof FilterPolicyError) throw snsError('InvalidParameter', `Invalid parameter: FilterPolicy: ${error.message}`, { cause: error });
      throw error;
    }
  }

  /** Subscribe: only the `sqs` protocol; same-account queues are confirmed at once. */
  subscribe(input: InputReader): { SubscriptionArn: string } {
    const topic = this.#topic(input.optionalString('TopicArn'));
    const protocol = input.string('Protocol');
    const endpoint = input.optionalString('Endpoint');
    if (protocol !== 'sqs') {
      throw snsError(
        'InvalidParameter',
        `Invalid parameter: Protocol Reason: the local endpoint delivers only to the sqs protocol, got "${protocol}"${topic.fifo ? ' (FIFO topics deliver only to SQS queues)' : ''}`,
      );
    }
    if (endpoint === undefined || !/^arn:aws[\w-]*:sqs:[\w-]+:\d{12}:[A-Za-z0-9_-]+(\.fifo)?$/.test(endpoint)) {
      throw snsError('InvalidParameter', `Invalid parameter: SQS endpoint ARN Reason: ${show(endpoint)} is not the ARN of an SQS queue`);
    }
    const queue = this.#options.sqs.describeArn(endpoint);
    if (queue?.fifo && !topic.fifo) {
      throw snsError('InvalidParameter', 'Invalid parameter: Invalid parameter: Endpoint Reason: FIFO SQS Queues can not be subscribed to standard SNS topics');
    }
    const attributes = new Map<string, string>();
    for (const [k, v] of Object.entries(input.stringMap('Attributes'))) attributes.set(k, this.#checkSubscriptionAttribute(topic, k, v));
    const filter = this.#compileFilter(attributes);
    for (const existing of topic.subscriptions.values()) {
      if (existing.endpoint !== endpoint) continue;
      for (const [k, v] of attributes) {
        if (existing.attributes.get(k) !== v) {
          throw snsError('InvalidParameter', `Invalid parameter: Attributes Reason: Subscription already exists with different attributes (${k})`);
        }
      }
      return { SubscriptionArn: existing.arn };
    }
    if (topic.fifo || Number(topic.attributes.get('MaximumMessageSize') ?? DEFAULT_MAX_MESSAGE_BYTES) > DEFAULT_MAX_MESSAGE_BYTES) {
      if (topic.subscriptions.size >= MAX_FIFO_SUBSCRIPTIONS) {
        throw snsError('SubscriptionLimitExceeded', `Topic ${topic.arn} already has ${MAX_FIFO_SUBSCRIPTIONS} subscriptions, the most it may have.`);
      }
    }
    if (filter && [...topic.subscriptions.values()].filter((s) => s.filter).length >= MAX_FILTER_POLICIES) {
      throw snsError('FilterPolicyLimitExceeded', `Topic ${topic.arn} already has ${MAX_FILTER_POLICIES} filter policies, the most it may have.`);
    }
    const subscription: Subscription = {
      arn: `${topic.arn}:${randomUUID()}`,
      topicArn: topic.arn,
      endpoint,
      attributes,
      filter,
      delivered: 0,
      filtered: 0,
      failed: 0,
    };
    topic.subscriptions.set(subscription.arn, subscription);
    this.#changed();
    return { SubscriptionArn: subscription.arn };
  }

  /** Unsubscribe. */
  unsubscribe(input: InputReader): Record<string, never> {
    const { topic, subscription } = this.#subscription(input.string('SubscriptionArn'));
    topic.subscriptions.delete(subscription.arn);
    topic.deleted += 1;
    this.#changed();
    return {};
  }

  #describe(subscription: Subscription): { SubscriptionArn: string; Owner: string; Protocol: string; Endpoint: string; TopicArn: string } {
    return {
      SubscriptionArn: subscription.arn,
      Owner: this.#options.accountId,
      Protocol: 'sqs',
      Endpoint: subscription.endpoint,
      TopicArn: subscription.topicArn,
    };
  }

  /** ListSubscriptionsByTopic (100 per page). */
  listSubscriptionsByTopic(input: InputReader): { Subscriptions: ReturnType<SnsService['describeSubscription']>[]; NextToken?: string } {
    const topic = this.#topic(input.optionalString('TopicArn'));
    const { items, next } = page([...topic.subscriptions.values()], input.optionalString('NextToken'));
    return { Subscriptions: items.map((s) => this.#describe(s)), ...(next !== undefined ? { NextToken: next } : {}) };
  }

  /** ListSubscriptions (100 per page). */
  listSubscriptions(input: InputReader): { Subscriptions: ReturnType<SnsService['describeSubscription']>[]; NextToken?: string } {
    const all = [...this.#topics.values()].flatMap((t) => [...t.subscriptions.values()]);
    const { items, next } = page(all, input.optionalString('NextToken'));
    return { Subscriptions: items.map((s) => this.#describe(s)), ...(next !== undefined ? { NextToken: next } : {}) };
  }

  /** The public description of a subscription (its list entry). */
  describeSubscription(arn: string): { SubscriptionArn: string; Owner: string; Protocol: string; Endpoint: string; TopicArn: string } {
    return this.#describe(this.#subscription(arn).subscription);
  }

  /** GetSubscriptionAttributes. */
  getSubscriptionAttributes(input: InputReader): { Attributes: XmlMap } {
    const { subscription } = this.#subscription(input.string('SubscriptionArn'));
    const out: Record<string, string> = {
      SubscriptionArn: subscription.arn,
      TopicArn: subscription.topicArn,
      Owner: this.#options.accountId,
      Protocol: 'sqs',
      Endpoint: subscription.endpoint,
      ConfirmationWasAuthenticated: 'true',
      PendingConfirmation: 'false',
      RawMessageDelivery: 'false',
    };
    for (const [k, v] of subscription.attributes) out[k] = v;
    if (out.FilterPolicy !== undefined && out.FilterPolicyScope === undefined) out.FilterPolicyScope = 'MessageAttributes';
    return { Attributes: new XmlMap(out) };
  }

  /** SetSubscriptionAttributes. */
  setSubscriptionAttributes(input: InputReader): Record<string, never> {
    const { topic, subscription } = this.#subscription(input.string('SubscriptionArn'));
    const name = input.string('AttributeName');
    const value = input.optionalString('AttributeValue') ?? '';
    const attributes = new Map(subscription.attributes);
    attributes.set(name, this.#checkSubscriptionAttribute(topic, name, value));
    const filter = this.#compileFilter(attributes);
    subscription.attributes.clear();
    for (const [k, v] of attributes) subscription.attributes.set(k, v);
    subscription.filter = filter;
    this.#changed();
    return {};
  }

  // ---- publishing --------------------------------------------------------------------

  #messageAttributes(entries: Map<string, InputReader>): Map<string, AttributeValue> {
    const out = new Map<string, AttributeValue>();
    for (const [name, value] of entries) {
      const problem = attributeNameProblem(name);
      if (problem) throw snsError('InvalidParameterValue', `The message attribute '${name}' has an invalid message attribute name: ${problem}.`);
      const dataType = value.optionalString('DataType');
      if (dataType === undefined) throw snsError('InvalidParameter', `Invalid parameter: MessageAttributes.${name}.DataType Reason: no value for required parameter`);
      if (!['String', 'String.Array', 'Number', 'Binary'].includes(dataType)) {
        throw snsError(
          'InvalidParameterValue',
          `The message attribute '${name}' has an invalid message attribute type "${dataType}"; allowed: String, String.Array, Number, Binary.`,
        );
      }
      if (dataType === 'Binary') {
        const binary = value.optionalString('BinaryValue');
        if (binary === undefined || binary === '') {
          throw snsError('InvalidParameterValue', `The message attribute '${name}' with type 'Binary' must use field 'BinaryValue', and it must not be empty.`);
        }
        out.set(name, { dataType, binaryValue: Buffer.from(binary, 'base64') });
        continue;
      }
      const text = value.optionalString('StringValue');
      if (text === undefined || text === '') {
        throw snsError('InvalidParameterValue', `The message attribute '${name}' with type '${dataType}' must use field 'StringValue', and it must not be empty.`);
      }
      if (dataType === 'Number' && !isNumberText(text.trim())) {
        throw snsError('InvalidParameterValue', `The message attribute '${name}' has type Number but value '${text}' is not a number.`);
      }
      if (dataType === 'String.Array') {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        if (!Array.isArray(parsed) || !parsed.every((v) => v === null || ['string', 'number', 'boolean'].includes(typeof v))) {
          throw snsError(
            'InvalidParameterValue',
            `The message attribute '${name}' has type String.Array but value '${text}' is not a JSON array of strings, numbers, booleans or nulls.`,
          );
        }
      }
      out.set(name, { dataType, stringValue: text });
    }
    return out;
  }

  /** Validates one message (Publish, or one PublishBatch entry). */
  #outgoing(topic: Topic, entry: InputReader): Outgoing {
    const body = entry.optionalString('Message');
    if (body === undefined || body === '') throw snsError('InvalidParameter', 'Invalid parameter: Message Reason: Empty message');
    const subject = entry.optionalString('Subject');
    if (subject !== undefined && (subject === '' || subject.length >= 100 || hasControlCharacter(subject))) {
      throw snsError('InvalidParameter', 'Invalid parameter: Subject Reason: must be non-empty text of fewer than 100 characters with no line breaks or control characters');
    }
    let bodyForSqs = body;
    const structure = entry.optionalString('MessageStructure');
    if (structure !== undefined) {
      if (structure !== 'json') throw snsError('InvalidParameter', `Invalid parameter: MessageStructure Reason: the only valid value is json, got "${structure}"`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        throw snsError('InvalidParameter', 'Invalid parameter: Message Structure - JSON message body failed to parse');
      }
      const record = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
      if (!record || typeof record.default !== 'string') {
        throw snsError('InvalidParameter', 'Invalid parameter: Message Structure - No default entry in JSON message body');
      }
      bodyForSqs = typeof record.sqs === 'string' ? record.sqs : record.default;
    }
    const attributes = this.#messageAttributes(entry.objectMap('MessageAttributes'));
    let size = utf8Bytes(body);
    for (const [name, value] of attributes) size += attributeBytes(name, value);
    const max = Number(topic.attributes.get('MaximumMessageSize') ?? DEFAULT_MAX_MESSAGE_BYTES);
    if (size > max) {
      throw snsError('InvalidParameter', `Invalid parameter: Message too long (${size} bytes of body and message attributes; the topic accepts at most ${max})`);
    }
    const groupId = entry.optionalString('MessageGroupId');
    let deduplicationId = entry.optionalString('MessageDeduplicationId');
    if (groupId !== undefined && !FIFO_TOKEN.test(groupId)) {
      throw snsError('InvalidParameter', `Invalid parameter: MessageGroupId Reason: up to 128 alphanumeric or punctuation characters are allowed, got "${groupId}"`);
    }
    if (topic.fifo) {
      if (groupId === undefined) throw snsError('InvalidParameter', 'Invalid parameter: The MessageGroupId parameter is required for FIFO topics');
      if (deduplicationId === undefined) {
        if ((topic.attributes.get('ContentBasedDeduplication') ?? 'false') !== 'true') {
          throw snsError(
            'InvalidParameter',
            'Invalid parameter: The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly',
          );
        }
        deduplicationId = sha256OfText(body);
      } else if (!FIFO_TOKEN.test(deduplicationId)) {
        throw snsError(
          'InvalidParameter',
          `Invalid parameter: MessageDeduplicationId Reason: up to 128 alphanumeric or punctuation characters are allowed, got "${deduplicationId}"`,
        );
      }
    } else if (deduplicationId !== undefined) {
      throw snsError(
        'InvalidParameter',
        'Invalid parameter: MessageDeduplicationId Reason: The request includes MessageDeduplicationId parameter that is not valid for this topic type',
      );
    }
    return { body, bodyForSqs, subject, attributes, groupId, deduplicationId, size };
  }

  #nextSequence(topic: Topic, now: number): bigint {
    const fromClock = BigInt(Math.floor(now)) * 10_000_000n;
    topic.lastSequence = fromClock > topic.lastSequence ? fromClock : topic.lastSequence + 1n;
    return topic.lastSequence;
  }

  /** Publishes a validated message: deduplicates, numbers and delivers it. */
  #publish(topic: Topic, message: Outgoing): { MessageId: string; SequenceNumber?: string } {
    const now = this.#now();
    let key: string | undefined;
    if (topic.fifo) {
      for (const [k, record] of topic.deduplication) {
        if (record.expiresAt > now) break;
        topic.deduplication.delete(k);
      }
      key = topic.attributes.get('FifoThroughputScope') === 'MessageGroup' ? `${message.groupId}\u0000${message.deduplicationId}` : message.deduplicationId;
      const seen = key !== undefined ? topic.deduplication.get(key) : undefined;
      if (seen && seen.expiresAt > now) {
        return { MessageId: seen.messageId, ...(seen.sequenceNumber !== undefined ? { SequenceNumber: seen.sequenceNumber } : {}) };
      }
    }
    const messageId = randomUUID();
    const sequenceNumber = topic.fifo ? this.#nextSequence(topic, now).toString() : undefined;
    if (key !== undefined) topic.deduplication.set(key, { expiresAt: now + DEDUPLICATION_INTERVAL_MS, messageId, sequenceNumber });
    for (const subscription of topic.subscriptions.values()) this.#deliver(topic, subscription, message, messageId, sequenceNumber, now);
    this.#changed();
    return { MessageId: messageId, ...(sequenceNumber !== undefined ? { SequenceNumber: sequenceNumber } : {}) };
  }

  #deliver(topic: Topic, subscription: Subscription, message: Outgoing, messageId: string, sequenceNumber: string | undefined, now: number): void {
    if (subscription.filter && !subscription.filter.matches({ attributes: message.attributes, body: message.bodyForSqs })) {
      subscription.filtered += 1;
      return;
    }
    const raw = subscription.attributes.get('RawMessageDelivery') === 'true';
    const body = raw ? message.bodyForSqs : this.#notification(topic, subscription, message, messageId, sequenceNumber, now);
    const queueIsFifo = this.#options.sqs.describeArn(subscription.endpoint)?.fifo ?? false;
    const delivery = {
      body,
      attributes: raw ? message.attributes : new Map<string, AttributeValue>(),
      ...(topic.fifo && queueIsFifo ? { groupId: message.groupId as string, deduplicationId: message.deduplicationId as string } : {}),
    };
    const result = this.#options.sqs.deliver(subscription.endpoint, delivery);
    if (result.ok) {
      subscription.delivered += 1;
      return;
    }
    subscription.failed += 1;
    this.#options.onDeliveryFailure?.({ subscriptionArn: subscription.arn, endpoint: subscription.endpoint, reason: result.reason });
    const redrive = subscription.attributes.get('RedrivePolicy');
    if (redrive) {
      const target = (JSON.parse(redrive) as { deadLetterTargetArn: string }).deadLetterTargetArn;
      this.#options.sqs.deliver(target, { ...delivery, attributes: new Map() });
    }
  }

  #notification(topic: Topic, subscription: Subscription, message: Outgoing, messageId: string, sequenceNumber: string | undefined, now: number): string {
    const attributes: Record<string, { Type: string; Value: string }> = {};
    for (const [name, value] of message.attributes) {
      attributes[name] = { Type: value.dataType, Value: value.binaryValue !== undefined ? value.binaryValue.toString('base64') : (value.stringValue ?? '') };
    }
    return JSON.stringify({
      Type: 'Notification',
      MessageId: messageId,
      ...(sequenceNumber !== undefined ? { SequenceNumber: sequenceNumber } : {}),
      TopicArn: topic.arn,
      ...(message.subject !== undefined ? { Subject: message.subject } : {}),
      Message: message.bodyForSqs,
      Timestamp: new Date(now).toISOString(),
      UnsubscribeURL: `${this.#options.baseUrl()}/?Action=Unsubscribe&SubscriptionArn=${encodeURIComponent(subscription.arn)}`,
      ...(message.attributes.size > 0 ? { MessageAttributes: attributes } : {}),
    });
  }

  /** Publish. */
  publish(input: InputReader): { MessageId: string; SequenceNumber?: string } {
    if (input.has('PhoneNumber')) {
      throw snsError('InvalidParameter', 'Invalid parameter: PhoneNumber Reason: the local endpoint publishes only to topics (TopicArn or TargetArn)');
    }
    const topic = this.#topic(input.optionalString('TopicArn') ?? input.optionalString('TargetArn'), 'TopicArn or TargetArn');
    return this.#publish(topic, this.#outgoing(topic, input));
  }

  /** PublishBatch: batch-level limits first, then each entry on its own, in order. */
  publishBatch(input: InputReader): {
    Successful: { Id: string; MessageId: string; SequenceNumber?: string }[];
    Failed: { Id: string; Code: string; Message: string; SenderFault: boolean }[];
  } {
    const topic = this.#topic(input.optionalString('TopicArn'));
    const entries = input.optionalObjectList('PublishBatchRequestEntries') ?? [];
    if (entries.length === 0) throw snsError('EmptyBatchRequest', 'The batch request does not contain any entries.');
    if (entries.length > 10) {
      throw snsError('TooManyEntriesInBatchRequest', `The batch request contains more entries than permissible: ${entries.length} entries; at most 10 are allowed.`);
    }
    const ids = new Set<string>();
    for (const entry of entries) {
      const id = entry.string('Id');
      if (!BATCH_ENTRY_ID.test(id)) {
        throw snsError(
          'InvalidBatchEntryId',
          `The Id of a batch entry in a batch request doesn't abide by the specification: "${id}" (1 to 80 letters, digits, hyphens and underscores).`,
        );
      }
      if (ids.has(id)) throw snsError('BatchEntryIdsNotDistinct', `Two or more batch entries in the request have the same Id: ${id}.`);
      ids.add(id);
    }
    const max = Number(topic.attributes.get('MaximumMessageSize') ?? DEFAULT_MAX_MESSAGE_BYTES);
    const prepared = entries.map((entry) => {
      try {
        return { id: entry.string('Id'), message: this.#outgoing(topic, entry) };
      } catch (error) {
        if (!(error instanceof AwsApiError)) throw error;
        return { id: entry.string('Id'), error, size: utf8Bytes(entry.optionalString('Message') ?? '') };
      }
    });
    const total = prepared.reduce((sum, p) => sum + ('message' in p && p.message ? p.message.size : (p.size ?? 0)), 0);
    if (total > max) {
      throw snsError(
        'BatchRequestTooLong',
        `The length of all the batch messages put together is more than the limit: ${total} bytes of bodies and message attributes; at most ${max} are allowed.`,
      );
    }
    const Successful: { Id: string; MessageId: string; SequenceNumber?: string }[] = [];
    const Failed: { Id: string; Code: string; Message: string; SenderFault: boolean }[] = [];
    for (const p of prepared) {
      if ('message' in p && p.message) Successful.push({ Id: p.id, ...this.#publish(topic, p.message) });
      else if ('error' in p && p.error) Failed.push({ Id: p.id, Code: p.error.kind.code, Message: p.error.message, SenderFault: p.error.kind.fault === 'Sender' });
    }
    return { Successful, Failed };
  }

  // ---- tags --------------------------------------------------------------------------

  /** TagResource (topics). */
  tagResource(input: InputReader): Record<string, never> {
    const topic = this.#topic(input.string('ResourceArn'), 'ResourceArn');
    for (const tag of input.objectList('Tags')) topic.tags.set(tag.string('Key'), tag.string('Value'));
    this.#changed();
    return {};
  }

  /** ListTagsForResource (topics). */
  listTagsForResource(input: InputReader): { Tags: { Key: string; Value: string }[] } {
    const topic = this.#topic(input.string('ResourceArn'), 'ResourceArn');
    return { Tags: [...topic.tags].map(([Key, Value]) => ({ Key, Value })) };
  }

  // ---- state -------------------------------------------------------------------------

  /** Delivery counters per subscription. */
  stats(): { subscriptionArn: string; endpoint: string; delivered: number; filtered: number; failed: number }[] {
    return [...this.#topics.values()].flatMap((t) =>
      [...t.subscriptions.values()].map((s) => ({ subscriptionArn: s.arn, endpoint: s.endpoint, delivered: s.delivered, filtered: s.filtered, failed: s.failed })),
    );
  }

  /** The state to persist. */
  snapshot(): SnsSnapshot {
    return {
      topics: [...this.#topics.values()].map((t) => ({
        name: t.name,
        fifo: t.fifo,
        attributes: Object.fromEntries(t.attributes),
        tags: Object.fromEntries(t.tags),
        lastSequence: t.lastSequence.toString(),
        deleted: t.deleted,
        deduplication: [...t.deduplication].map(([key, r]) => ({
          key,
          expiresAt: r.expiresAt,
          messageId: r.messageId,
          ...(r.sequenceNumber !== undefined ? { sequenceNumber: r.sequenceNumber } : {}),
        })),
        subscriptions: [...t.subscriptions.values()].map((s) => ({ arn: s.arn, endpoint: s.endpoint, attributes: Object.fromEntries(s.attributes) })),
      })),
    };
  }

  /** Replaces the state with a persisted one. */
  restore(snapshot: SnsSnapshot): void {
    this.#topics.clear();
    for (const saved of snapshot.topics) {
      const topic: Topic = {
        name: saved.name,
        arn: this.#arn(saved.name),
        fifo: saved.fifo,
        attributes: new Map(Object.entries(saved.attributes)),
        tags: new Map(Object.entries(saved.tags)),
        subscriptions: new Map(),
        deduplication: new Map(saved.deduplication.map((r) => [r.key, { expiresAt: r.expiresAt, messageId: r.messageId, sequenceNumber: r.sequenceNumber }])),
        lastSequence: BigInt(saved.lastSequence),
        deleted: saved.deleted,
      };
      for (const s of saved.subscriptions) {
        const attributes = new Map(Object.entries(s.attributes));
        topic.subscriptions.set(s.arn, {
          arn: s.arn,
          topicArn: topic.arn,
          endpoint: s.endpoint,
          attributes,
          filter: this.#compileFilter(attributes),
          delivered: 0,
          filtered: 0,
          failed: 0,
        });
      }
      this.#topics.set(topic.name, topic);
    }
  }
}

function page<T>(items: readonly T[], token: string | undefined): { items: T[]; next?: string } {
  const start = token !== undefined ? Number(Buffer.from(token, 'base64url').toString('utf8')) : 0;
  if (!Number.isInteger(start) || start < 0) throw snsError('InvalidParameter', `Invalid parameter: NextToken Reason: "${token}" is not a token this endpoint issued`);
  const next = start + PAGE < items.length ? Buffer.from(String(start + PAGE), 'utf8').toString('base64url') : undefined;
  return { items: items.slice(start, start + PAGE), ...(next !== undefined ? { next } : {}) };
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}
