/** The `onPublish` listeners of one message queue, shared by the SQLite adapter and the in-memory fake. */
export interface PublishListeners {
  /**
   * Adds `listener` and returns its remover. Each call adds its own entry, so a function added twice is called twice
   * and each remover takes away one.
   */
  add(listener: (topic: string) => void): () => void;
  /** Calls every listener with `topic`; one that throws stops none of the others (see createPublishListeners). */
  notify(topic: string): void;
}

/**
 * An empty set of publish listeners. Call `notify` only once the publish is stored: a listener that throws must not
 * turn a stored message into a failed publish (the caller would publish again), so its error is rethrown on its own
 * in a microtask, where the process reports it.
 */
export function createPublishListeners(): PublishListeners {
  const listeners = new Set<(topic: string) => void>();
  return {
    add(listener: (topic: string) => void): () => void {
      const entry = (topic: string): void => listener(topic);
      listeners.add(entry);
      return () => {
        listeners.delete(entry);
      };
    },
    notify(topic: string): void {
      // A copy, so a listener that adds or removes listeners changes only later publishes.
      for (const listener of [...listeners]) {
        try {
          listener(topic);
        } catch (error) {
          queueMicrotask(() => {
            throw error;
          });
        }
      }
    },
  };
}
