/**
 * One SQS queue: its messages and their lifecycle, as a plain state machine with the time
 * passed in. No I/O, no timers: the service drives it.
 *
 * Behaviour, as the SQS Developer Guide documents it:
 * - A received message is in flight (hidden) until it is deleted or its visibility
 *   timeout expires; then it is visible again and its receive count keeps growing.
 * - FIFO queues keep order per message group, and "inflight messages block delivery of
 *   available messages within the same message group" ("Why doesn't my FIFO queue return
 *   all messages", AWS knowledge center); a receive returns "as many messages with the same
 *   message group ID as possible", and may add messages of other available groups.
 * - FIFO deduplication: a message whose deduplication id was seen in the last 5 minutes is
 *   accepted but not delivered; the id is remembered after the message is deleted.
 * - Redrive: "When the ReceiveCount for a message exceeds the maxReceiveCount for a queue,
 *   Amazon SQS moves the message to the dead-letter-queue" — i.e. the receive that would
 *   be number maxReceiveCount + 1 moves the message instead of returning it.
 * - Messages older than MessageRetentionPeriod are deleted. The retention clock of a message
 *   starts when it is sent; a move to a FIFO dead-letter queue restarts it, a move to a
 *   standard one does not ("Setting-up dead-letter queue retention in Amazon SQS",
 *   https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/setting-up-dead-letter-queue-retention.html).
 */
import type { AttributeValue } from '../digest.ts';
import { OrderedList } from './message-list.ts';

/** The FIFO deduplication interval: 5 minutes. */
export const DEDUPLICATION_INTERVAL_MS = 5 * 60 * 1000;

/** One stored message. Mutable fields change as it is received, returned and moved. */
export interface StoredMessage {
  readonly messageId: string;
  readonly body: string;
  readonly attributes: ReadonlyMap<string, AttributeValue>;
  readonly systemAttributes: ReadonlyMap<string, AttributeValue>;
  readonly md5OfBody: string;
  readonly md5OfAttributes: string | undefined;
  readonly md5OfSystemAttributes: string | undefined;
  /** Epoch milliseconds of the send (`SentTimestamp`; kept across dead-letter moves). */
  readonly sentTimestamp: number;
  readonly senderId: string;
  readonly groupId: string | undefined;
  /** FIFO deduplication id; a move to a FIFO dead-letter queue replaces it with the message id. */
  deduplicationId: string | undefined;
  /** Epoch milliseconds of the arrival in this queue (the age CloudWatch reports as ApproximateAgeOfOldestMessage). */
  arrivedAt: number;
  /** Epoch milliseconds from which MessageRetentionPeriod is counted. */
  retainedFrom: number;
  /** Bytes counted against size limits. */
  readonly size: number;
  /** ARN of the queue this message was moved from to a dead-letter queue, if it was. */
  deadLetterSourceArn: string | undefined;
  /** Arrival position in this queue. */
  order: number;
  /** FIFO sequence number in this queue. */
  sequenceNumber: bigint | undefined;
  receiveCount: number;
  firstReceiveTimestamp: number | undefined;
  /** Epoch milliseconds of the latest receive (the 12-hour visibility limit counts from it). */
  lastReceiveTimestamp: number | undefined;
  /** Epoch milliseconds from which the message may be received (send delay). */
  availableAt: number;
  inFlight: boolean;
  /** While in flight: when it becomes visible again. */
  visibleAt: number;
  /** Identifies the latest receive; part of the receipt handle. */
  receiptNonce: string | undefined;
}

/** A deduplication record: the message first sent with this id. */
export interface DeduplicationRecord {
  readonly expiresAt: number;
  readonly messageId: string;
  readonly sequenceNumber: bigint | undefined;
}

interface Group {
  readonly id: string;
  readonly list: OrderedList<StoredMessage>;
  inFlight: number;
}

/** What `receive` does with a message that is due for the dead-letter queue. */
export type DeadLetterHook = (message: StoredMessage) => boolean;

/** Counts reported by GetQueueAttributes. */
export interface QueueCounts {
  readonly visible: number;
  readonly inFlight: number;
  readonly delayed: number;
  /** Epoch milliseconds of the oldest message's arrival in the queue, or undefined when empty. */
  readonly oldestArrival: number | undefined;
}

/** The message-holding part of a queue. */
export class QueueState {
  readonly fifo: boolean;
  readonly #groups = new Map<string, Group>();
  /** FIFO: groups with messages and nothing in flight. Standard: the single group. */
  readonly #available = new Set<Group>();
  /** Standard queues: messages whose send delay has not passed yet. */
  #delayed: StoredMessage[] = [];
  #nextDelayedAt = Number.POSITIVE_INFINITY;
  readonly #byId = new Map<string, StoredMessage>();
  readonly #inFlight = new Set<StoredMessage>();
  #nextExpiry = Number.POSITIVE_INFINITY;
  readonly #deduplication = new Map<string, DeduplicationRecord>();
  #order = 0;
  #lastSequence = 0n;
  /** No stored message has a `retainedFrom` earlier than this (may be earlier than the true minimum). */
  #oldestRetained = Number.POSITIVE_INFINITY;

  constructor(fifo: boolean) {
    this.fifo = fifo;
  }

  /** Number of stored messages (visible, in flight and delayed). */
  get size(): number {
    return this.#byId.size;
  }

  /** Number of messages in flight. */
  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  /** The stored message with id `messageId`. */
  get(messageId: string): StoredMessage | undefined {
    return this.#byId.get(messageId);
  }

  /** Every stored message, in no particular order. */
  messages(): IterableIterator<StoredMessage> {
    return this.#byId.values();
  }

  /** The next sequence number: strictly increasing, large and not consecutive across time. */
  nextSequenceNumber(now: number): bigint {
    const fromClock = BigInt(Math.floor(now)) * 10_000_000n;
    this.#lastSequence = fromClock > this.#lastSequence ? fromClock : this.#lastSequence + 1n;
    return this.#lastSequence;
  }

  /** The live deduplication record for `key`, if any. */
  deduplicated(key: string, now: number): DeduplicationRecord | undefined {
    this.#sweepDeduplication(now);
    const record = this.#deduplication.get(key);
    return record && record.expiresAt > now ? record : undefined;
  }

  /** Remembers `key` for the deduplication interval. */
  remember(key: string, record: DeduplicationRecord): void {
    this.#deduplication.delete(key);
    this.#deduplication.set(key, record);
  }

  #sweepDeduplication(now: number): void {
    for (const [key, record] of this.#deduplication) {
      if (record.expiresAt > now) break;
      this.#deduplication.delete(key);
    }
  }

  #group(id: string): Group {
    let group = this.#groups.get(id);
    if (!group) {
      group = { id, list: new OrderedList<StoredMessage>(), inFlight: 0 };
      this.#groups.set(id, group);
    }
    return group;
  }

  #groupKey(message: StoredMessage): string {
    return this.fifo ? (message.groupId ?? '') : '';
  }

  #release(group: Group): void {
    if (group.list.length === 0 && group.inFlight === 0) {
      this.#groups.delete(group.id);
      this.#available.delete(group);
    } else if (!this.fifo || group.inFlight === 0) {
      if (group.list.length > 0) this.#available.add(group);
    }
  }

  /** Adds a new message (already deduplicated) at the end of its group. */
  add(message: StoredMessage, now: number): void {
    message.order = ++this.#order;
    this.#byId.set(message.messageId, message);
    this.#oldestRetained = Math.min(this.#oldestRetained, message.retainedFrom);
    if (!this.fifo && message.availableAt > now) {
      this.#delayed.push(message);
      this.#nextDelayedAt = Math.min(this.#nextDelayedAt, message.availableAt);
      return;
    }
    // A FIFO message waits in its group; remember when, so that long polls wake then.
    if (message.availableAt > now) this.#nextDelayedAt = Math.min(this.#nextDelayedAt, message.availableAt);
    const group = this.#group(this.#groupKey(message));
    group.list.push(message);
    this.#release(group);
  }

  /** Makes due delayed messages available and expired in-flight messages visible again. */
  tick(now: number): void {
    if (now >= this.#nextDelayedAt) {
      const still: StoredMessage[] = [];
      let next = Number.POSITIVE_INFINITY;
      for (const message of this.#delayed) {
        if (message.availableAt <= now) {
          const group = this.#group('');
          group.list.insert(message);
          this.#release(group);
        } else {
          still.push(message);
          next = Math.min(next, message.availableAt);
        }
      }
      this.#delayed = still;
      this.#nextDelayedAt = next;
    }
    if (now >= this.#nextExpiry) {
      let next = Number.POSITIVE_INFINITY;
      for (const message of this.#inFlight) {
        if (message.visibleAt <= now) this.#returnToQueue(message);
        else next = Math.min(next, message.visibleAt);
      }
      this.#nextExpiry = next;
    }
  }

  /** Epoch milliseconds of the next moment a hidden message may become receivable. */
  nextChange(): number {
    return Math.min(this.#nextExpiry, this.#nextDelayedAt);
  }

  #returnToQueue(message: StoredMessage): void {
    this.#inFlight.delete(message);
    message.inFlight = false;
    const group = this.#group(this.#groupKey(message));
    group.inFlight -= 1;
    group.list.insert(message);
    this.#release(group);
  }

  /**
   * Deletes the messages whose retention period has passed at `now`. Exact, and cheap when
   * nothing is due: the queue is scanned only when its oldest message may have expired.
   */
  expire(now: number, retentionMs: number): void {
    if (this.#oldestRetained + retentionMs > now) return;
    let oldest = Number.POSITIVE_INFINITY;
    for (const message of [...this.#byId.values()]) {
      if (message.retainedFrom + retentionMs <= now) this.remove(message);
      else oldest = Math.min(oldest, message.retainedFrom);
    }
    this.#oldestRetained = oldest;
  }

  /**
   * Receives up to `max` messages, hiding them until `now + visibilityMs`. Messages due for
   * the dead-letter queue are handed to `deadLetter`, which moves them and returns true (or
   * returns false when there is nowhere to move them, and they are delivered).
   */
  receive(
    max: number,
    visibilityMs: number,
    now: number,
    retentionMs: number,
    nonce: () => string,
    redrive?: { readonly maxReceiveCount: number; readonly deadLetter: DeadLetterHook },
  ): StoredMessage[] {
    this.expire(now, retentionMs);
    this.tick(now);
    const out: StoredMessage[] = [];
    for (const group of this.#available) {
      while (out.length < max) {
        const message = group.list.peek();
        if (!message || message.availableAt > now) break;
        group.list.shift();
        if (redrive && message.receiveCount >= redrive.maxReceiveCount) {
          this.#byId.delete(message.messageId);
          if (redrive.deadLetter(message)) continue;
          this.#byId.set(message.messageId, message);
        }
        message.receiveCount += 1;
        message.firstReceiveTimestamp ??= now;
        message.lastReceiveTimestamp = now;
        message.receiptNonce = nonce();
        message.inFlight = true;
        message.visibleAt = now + visibilityMs;
        this.#inFlight.add(message);
        this.#nextExpiry = Math.min(this.#nextExpiry, message.visibleAt);
        group.inFlight += 1;
        out.push(message);
      }
      if (this.fifo && group.inFlight > 0) this.#available.delete(group);
      if (group.list.length === 0 && group.inFlight === 0) this.#release(group);
      if (out.length >= max) break;
    }
    return out;
  }

  /** Deletes `message`, wherever it is. */
  remove(message: StoredMessage): void {
    if (!this.#byId.delete(message.messageId)) return;
    if (message.inFlight) {
      this.#inFlight.delete(message);
      message.inFlight = false;
      const group = this.#group(this.#groupKey(message));
      group.inFlight -= 1;
      this.#release(group);
      return;
    }
    const delayedAt = this.#delayed.indexOf(message);
    if (delayedAt >= 0) {
      this.#delayed.splice(delayedAt, 1);
      return;
    }
    const group = this.#groups.get(this.#groupKey(message));
    if (group) {
      group.list.remove(message);
      this.#release(group);
    }
  }

  /** Sets the remaining visibility timeout of an in-flight message; 0 makes it visible now. */
  changeVisibility(message: StoredMessage, visibilityMs: number, now: number): void {
    if (visibilityMs === 0) {
      this.#returnToQueue(message);
      return;
    }
    message.visibleAt = now + visibilityMs;
    this.#nextExpiry = Math.min(this.#nextExpiry, message.visibleAt);
  }

  /** Deletes every message, in flight or not. Deduplication records stay. */
  purge(): void {
    this.#groups.clear();
    this.#available.clear();
    this.#delayed = [];
    this.#nextDelayedAt = Number.POSITIVE_INFINITY;
    this.#byId.clear();
    this.#inFlight.clear();
    this.#nextExpiry = Number.POSITIVE_INFINITY;
    this.#oldestRetained = Number.POSITIVE_INFINITY;
  }

  /**
   * Removes and returns up to `max` messages that are not in flight, oldest first (used by
   * message move tasks).
   */
  takeVisible(max: number, now: number, retentionMs: number): StoredMessage[] {
    this.expire(now, retentionMs);
    this.tick(now);
    const candidates = [...this.#byId.values()].filter((m) => !m.inFlight).sort((a, b) => a.order - b.order);
    const out = candidates.slice(0, max);
    for (const message of out) this.remove(message);
    return out;
  }

  /** Message counts as of `now`. */
  counts(now: number, retentionMs: number): QueueCounts {
    this.expire(now, retentionMs);
    this.tick(now);
    let visible = 0;
    let delayed = 0;
    let oldest: number | undefined;
    for (const message of this.#byId.values()) {
      if (oldest === undefined || message.arrivedAt < oldest) oldest = message.arrivedAt;
      if (message.inFlight) continue;
      if (message.availableAt > now) delayed += 1;
      else visible += 1;
    }
    return { visible, inFlight: this.#inFlight.size, delayed, oldestArrival: oldest };
  }

  /** The state needed to rebuild this queue (see `restore`). */
  snapshot(): QueueStateSnapshot {
    return {
      order: this.#order,
      lastSequence: this.#lastSequence.toString(),
      messages: [...this.#byId.values()].sort((a, b) => a.order - b.order).map(toSnapshot),
      deduplication: [...this.#deduplication].map(([key, r]) => ({
        key,
        expiresAt: r.expiresAt,
        messageId: r.messageId,
        ...(r.sequenceNumber !== undefined ? { sequenceNumber: r.sequenceNumber.toString() } : {}),
      })),
    };
  }

  /** Rebuilds the state saved by `snapshot`. */
  static restore(fifo: boolean, snapshot: QueueStateSnapshot, now: number): QueueState {
    const state = new QueueState(fifo);
    for (const saved of snapshot.messages) {
      const message = fromSnapshot(saved);
      const order = message.order;
      const inFlight = message.inFlight;
      message.inFlight = false;
      state.add(message, Math.min(now, message.availableAt));
      message.order = order;
      if (inFlight) {
        // Put it back in flight with the visibility deadline it had.
        const group = state.#group(state.#groupKey(message));
        group.list.remove(message);
        message.inFlight = true;
        group.inFlight += 1;
        state.#inFlight.add(message);
        state.#nextExpiry = Math.min(state.#nextExpiry, message.visibleAt);
        if (state.fifo) state.#available.delete(group);
        state.#release(group);
      }
    }
    state.#order = snapshot.order;
    state.#lastSequence = BigInt(snapshot.lastSequence);
    for (const r of snapshot.deduplication) {
      state.#deduplication.set(r.key, {
        expiresAt: r.expiresAt,
        messageId: r.messageId,
        sequenceNumber: r.sequenceNumber !== undefined ? BigInt(r.sequenceNumber) : undefined,
      });
    }
    return state;
  }
}

/** A saved attribute value (binary as base64). */
export interface AttributeSnapshot {
  readonly name: string;
  readonly dataType: string;
  readonly stringValue?: string;
  readonly binaryValue?: string;
}

/** A saved message. */
export interface MessageSnapshot {
  readonly messageId: string;
  readonly body: string;
  readonly attributes: readonly AttributeSnapshot[];
  readonly systemAttributes: readonly AttributeSnapshot[];
  readonly md5OfBody: string;
  readonly md5OfAttributes?: string;
  readonly md5OfSystemAttributes?: string;
  readonly sentTimestamp: number;
  readonly senderId: string;
  readonly groupId?: string;
  readonly deduplicationId?: string;
  /** Absent in files written before it existed: the send time. */
  readonly arrivedAt?: number;
  /** Absent in files written before it existed: the send time. */
  readonly retainedFrom?: number;
  readonly size: number;
  readonly deadLetterSourceArn?: string;
  readonly order: number;
  readonly sequenceNumber?: string;
  readonly receiveCount: number;
  readonly firstReceiveTimestamp?: number;
  readonly lastReceiveTimestamp?: number;
  readonly availableAt: number;
  readonly inFlight: boolean;
  readonly visibleAt: number;
  readonly receiptNonce?: string;
}

/** A saved queue state. */
export interface QueueStateSnapshot {
  readonly order: number;
  readonly lastSequence: string;
  readonly messages: readonly MessageSnapshot[];
  readonly deduplication: readonly { key: string; expiresAt: number; messageId: string; sequenceNumber?: string }[];
}

/** Saves an attribute map. */
function attributesToSnapshot(attributes: ReadonlyMap<string, AttributeValue>): AttributeSnapshot[] {
  return [...attributes].map(([name, v]) => ({
    name,
    dataType: v.dataType,
    ...(v.stringValue !== undefined ? { stringValue: v.stringValue } : {}),
    ...(v.binaryValue !== undefined ? { binaryValue: v.binaryValue.toString('base64') } : {}),
  }));
}

/** Rebuilds an attribute map. */
function attributesFromSnapshot(saved: readonly AttributeSnapshot[]): Map<string, AttributeValue> {
  return new Map(
    saved.map((a) => [
      a.name,
      {
        dataType: a.dataType,
        ...(a.stringValue !== undefined ? { stringValue: a.stringValue } : {}),
        ...(a.binaryValue !== undefined ? { binaryValue: Buffer.from(a.binaryValue, 'base64') } : {}),
      },
    ]),
  );
}

function toSnapshot(m: StoredMessage): MessageSnapshot {
  return {
    messageId: m.messageId,
    body: m.body,
    attributes: attributesToSnapshot(m.attributes),
    systemAttributes: attributesToSnapshot(m.systemAttributes),
    md5OfBody: m.md5OfBody,
    ...(m.md5OfAttributes !== undefined ? { md5OfAttributes: m.md5OfAttributes } : {}),
    ...(m.md5OfSystemAttributes !== undefined ? { md5OfSystemAttributes: m.md5OfSystemAttributes } : {}),
    sentTimestamp: m.sentTimestamp,
    senderId: m.senderId,
    ...(m.groupId !== undefined ? { groupId: m.groupId } : {}),
    ...(m.deduplicationId !== undefined ? { deduplicationId: m.deduplicationId } : {}),
    arrivedAt: m.arrivedAt,
    retainedFrom: m.retainedFrom,
    size: m.size,
    ...(m.deadLetterSourceArn !== undefined ? { deadLetterSourceArn: m.deadLetterSourceArn } : {}),
    order: m.order,
    ...(m.sequenceNumber !== undefined ? { sequenceNumber: m.sequenceNumber.toString() } : {}),
    receiveCount: m.receiveCount,
    ...(m.firstReceiveTimestamp !== undefined ? { firstReceiveTimestamp: m.firstReceiveTimestamp } : {}),
    ...(m.lastReceiveTimestamp !== undefined ? { lastReceiveTimestamp: m.lastReceiveTimestamp } : {}),
    availableAt: m.availableAt,
    inFlight: m.inFlight,
    visibleAt: m.visibleAt,
    ...(m.receiptNonce !== undefined ? { receiptNonce: m.receiptNonce } : {}),
  };
}

function fromSnapshot(s: MessageSnapshot): StoredMessage {
  return {
    messageId: s.messageId,
    body: s.body,
    attributes: attributesFromSnapshot(s.attributes),
    systemAttributes: attributesFromSnapshot(s.systemAttributes),
    md5OfBody: s.md5OfBody,
    md5OfAttributes: s.md5OfAttributes,
    md5OfSystemAttributes: s.md5OfSystemAttributes,
    sentTimestamp: s.sentTimestamp,
    senderId: s.senderId,
    groupId: s.groupId,
    deduplicationId: s.deduplicationId,
    arrivedAt: s.arrivedAt ?? s.sentTimestamp,
    retainedFrom: s.retainedFrom ?? s.sentTimestamp,
    size: s.size,
    deadLetterSourceArn: s.deadLetterSourceArn,
    order: s.order,
    sequenceNumber: s.sequenceNumber !== undefined ? BigInt(s.sequenceNumber) : undefined,
    receiveCount: s.receiveCount,
    firstReceiveTimestamp: s.firstReceiveTimestamp,
    lastReceiveTimestamp: s.lastReceiveTimestamp ?? s.firstReceiveTimestamp,
    availableAt: s.availableAt,
    inFlight: s.inFlight,
    visibleAt: s.visibleAt,
    receiptNonce: s.receiptNonce,
  };
}
