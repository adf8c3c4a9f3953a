/** The listeners of one message queue's events (`onPublish`, `onExpired`), shared by the SQLite adapter and the in-memory fake. */
export interface PublishListeners<E> {
  /**
   * Adds `listener` and returns its remover. Each call adds its own entry, so a function added twice is called twice
   * and each remover takes away one.
   */
  add(listener: (event: E) => void): () => void;
  /** Calls every listener with `event`; one that throws stops none of the others (see createPublishListeners). */
  notify(event: E): void;
}

/**
 * An empty set of listeners. Call `notify` only once what it announces is stored: a listener that throws must not
 * turn a stored message into a failed publish (the caller would publish again), so its error is rethrown on its own
 * in a microtask, where the process reports it.
 */
export function createPublishListeners<E>(): PublishListeners<E> {
  const listeners = new Set<(event: E) => void>();
  return {
    add(listener: (event: E) => void): () => void {
      const entry = (event: E): void => listener(event);
      listeners.add(entry);
      return () => {
        listeners.delete(entry);
      };
    },
    notify(event: E): void {
      // A copy, so a listener that adds or removes listeners changes only later publishes.
      for (const listener of [...listeners]) {
        try {
          listener(event);
        } catch (error) {
          queueMicrotask(() => {
            throw error;
          });
        }
      }
    },
  };
}
