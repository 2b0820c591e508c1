import client from 'prom-client';

/** What webhook delivery tells the metrics (docs/operations.md, "Metrics and alerts"). */
export interface WebhookObserver {
  /** An attempt ended: answered 2xx, answered otherwise, or no answer (refused, reset, timed out). */
  attempted(result: 'success' | 'http_error' | 'no_answer', seconds: number): void;
  /** A delivery ended. */
  ended(result: 'succeeded' | 'failed'): void;
}

const ATTEMPT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Webhook series on a control plane's registry: events this replica handled, to `sum` over replicas. */
export function webhookMetrics(registry: client.Registry): WebhookObserver {
  const registers = [registry];
  const attempts = new client.Counter({
    name: 'a4c_webhook_attempts_total',
    help: 'Webhook delivery attempts this replica made, by result: success (2xx), http_error (another status) or no_answer (refused, reset, timed out)',
    labelNames: ['result'],
    registers,
  });
  const seconds = new client.Histogram({ name: 'a4c_webhook_attempt_duration_seconds', help: 'Seconds from sending a webhook attempt to its answer (or its failure)', buckets: ATTEMPT_BUCKETS, registers });
  const deliveries = new client.Counter({
    name: 'a4c_webhook_deliveries_total',
    help: 'Webhook deliveries this replica ended, by result: succeeded or failed (the retry policy gave up)',
    labelNames: ['result'],
    registers,
  });
  for (const result of ['success', 'http_error', 'no_answer']) attempts.inc({ result }, 0);
  for (const result of ['succeeded', 'failed']) deliveries.inc({ result }, 0);
  return {
    attempted: (result, s) => {
      attempts.inc({ result });
      seconds.observe(s);
    },
    ended: (result) => deliveries.inc({ result }),
  };
}

/** For a dispatcher without metrics. */
export const NO_WEBHOOK_METRICS: WebhookObserver = { attempted: () => undefined, ended: () => undefined };
