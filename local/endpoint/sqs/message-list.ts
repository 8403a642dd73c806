/**
 * An ordered list of messages with O(1) removal at the front, O(1) append, and ordered
 * insertion (used when a message whose visibility timeout expired goes back in front of
 * the messages sent after it).
 */

/** Anything with a position in its queue's arrival order. */
export interface Ordered {
  /** Arrival position in the queue; larger is later. */
  readonly order: number;
}

export class OrderedList<T extends Ordered> implements Iterable<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  /** Number of items. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** The first item, or undefined when empty. */
  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** Removes and returns the first item. */
  shift(): T | undefined {
    const item = this.#items[this.#head];
    if (item === undefined) return undefined;
    this.#items[this.#head] = undefined;
    this.#head += 1;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Appends `item` (which must be later than every item already in the list). */
  push(item: T): void {
    this.#items.push(item);
  }

  /** Inserts `item` at its place in arrival order. */
  insert(item: T): void {
    let lo = this.#head;
    let hi = this.#items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#items[mid] as T).order < item.order) lo = mid + 1;
      else hi = mid;
    }
    if (lo === this.#head && this.#head > 0) {
      this.#head -= 1;
      this.#items[this.#head] = item;
    } else {
      this.#items.splice(lo, 0, item);
    }
  }

  /** Removes `item`; returns whether it was in the list. */
  remove(item: T): boolean {
    const index = this.#items.indexOf(item, this.#head);
    if (index < 0) return false;
    if (index === this.#head) this.shift();
    else this.#items.splice(index, 1);
    return true;
  }

  *[Symbol.iterator](): Iterator<T> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i] as T;
  }
}
