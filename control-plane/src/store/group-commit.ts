/**
 * Group commit for rows that many requests write at once: add() resolves once the
 * write holding its item has committed. No timer: while one write is in flight the next
 * gathers (up to max items), so a lone item is written at once and a burst costs one
 * statement and one synchronous commit per round instead of one per item. A failed
 * write rejects every item it held.
 */
export class GroupCommit<T> {
  private pending: { item: T; resolve(): void; reject(e: Error): void }[] = [];
  private busy = false;
  private writing = 0;

  constructor(
    private readonly write: (items: T[]) => Promise<void>,
    private readonly max = 1000,
  ) {}

  add(item: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.flush();
    });
  }

  /** Items waiting or being written. */
  get size(): number {
    return this.pending.length + this.writing;
  }

  private flush(): void {
    if (this.busy || !this.pending.length) return;
    this.busy = true;
    const batch = this.pending.splice(0, this.max);
    this.writing = batch.length;
    this.write(batch.map((b) => b.item))
      .then(
        () => batch.forEach((b) => b.resolve()),
        (e: unknown) => batch.forEach((b) => b.reject(e as Error)),
      )
      .finally(() => {
        this.busy = false;
        this.writing = 0;
        this.flush();
      });
  }
}
