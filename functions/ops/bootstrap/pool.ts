/** Runs work over a list, a bounded number at a time (node built-ins only). */

/**
 * Calls `run` for each item, at most `limit` at a time, in the list's order. After the first
 * failure no new item starts; the ones running finish, then that first failure is thrown.
 */
export async function forEachLimited<T>(items: readonly T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  const next = items[Symbol.iterator]();
  let failure: { readonly error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined) {
      const { done, value } = next.next();
      if (done) return;
      try {
        await run(value);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure !== undefined) throw failure.error;
}
